import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from sdlib.captions import all_caption_words
from sdlib.clip import (CLIP, CLIPConfig, DroppedCharacterWarning, EmptyPromptWarning, Tokenizer, TruncationWarning,
                        UnknownWordWarning, clip_loss, retrieve, zero_shot)


def tokenizer():
    return Tokenizer(all_caption_words(), context_length=8)


def test_encode_adds_start_end_and_padding():
    tok = tokenizer()
    ids, mask = tok.encode(["a thick seven", "7"])
    assert ids.shape == mask.shape == (2, 8)
    assert mask.sum(1).tolist() == [5, 3]
    assert tok.vocab[ids[0, 0]] == "<start>" and tok.vocab[ids[0, 4]] == "<end>" and tok.vocab[ids[0, 5]] == "<pad>"
    assert tok.decode(ids) == ["a thick seven", "7"]


def test_unknown_words_warn_by_name_and_do_not_crash():
    tok = tokenizer()
    with pytest.warns(UnknownWordWarning, match="purple"):
        ids, mask = tok.encode("a purple seven")
    assert tok.vocab[ids[0, 2]] == "<unk>" and mask.sum() == 5
    with pytest.warns(UnknownWordWarning, match="banana"):
        ids, _ = tok.encode("banana")                        # only unknown words: still a valid prompt
    assert [tok.vocab[i] for i in ids[0, :3]] == ["<start>", "<unk>", "<end>"]


def test_empty_prompt_is_start_end():
    ids, mask = tokenizer().encode("")
    assert mask.sum() == 2


def test_long_prompts_are_truncated_with_a_warning_keeping_end():
    tok = tokenizer()
    with pytest.warns(TruncationWarning, match="longer than 6 words"):
        ids, mask = tok.encode("a thick seven a thick seven a thick seven")
    assert mask.all() and tok.vocab[ids[0, -1]] == "<end>"


def test_bad_prompt_types():
    with pytest.raises(TypeError, match="string or a list of strings"):
        tokenizer().encode(7)


def small_clip():
    torch.manual_seed(0)
    return CLIP(CLIPConfig(vocab=all_caption_words(), context_length=8, width=32, layers=1, heads=2, embed_dim=16,
                           image_channels=(8, 16))).eval()


def test_shapes_and_unit_embeddings():
    model = small_clip()
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    text = model.encode_text(["a 1", "two", "the number three"])
    assert text.shape == (3, 16) and torch.allclose(text.norm(dim=-1), torch.ones(3))
    assert model.encode_image(images).shape == (3, 16)
    context, mask = model.context(["a 1", "two"])
    assert context.shape == (2, 8, 32) and mask.shape == (2, 8)
    ids, mask = model.tokenize(["a 1", "two", "3"])
    assert model(images, ids, mask).shape == (3, 3)


def test_padding_does_not_change_the_text_embedding():
    model = small_clip()
    ids, mask = model.tokenize(["a thick seven"])
    other = ids.clone()
    other[~mask] = model.tokenizer.ids["seven"]                 # garbage where the mask is False
    assert torch.allclose(model.encode_text(ids=ids, mask=mask), model.encode_text(ids=other, mask=mask), atol=1e-6)


def test_images_of_the_wrong_shape_or_range_are_refused():
    model = small_clip()
    with pytest.raises(ValueError, match="28x28"):
        model.encode_image(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.encode_image(torch.full((2, 1, 28, 28), 255.0))


def test_clip_loss_is_symmetric_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 5, generator=g)
    target = torch.arange(5)
    want = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(clip_loss(logits), want)
    assert clip_loss(torch.eye(5) * 50) < 1e-6 < clip_loss(torch.zeros(5, 5))
    # identical captions share the credit: with soft targets (1/2, 1/2) on the duplicate pair, equal
    # logits for the pair reach the minimum, the targets' entropy (2/3 · ln 2 averaged over 3 rows)
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    block = torch.where(same, 50.0, 0.0)
    assert clip_loss(block, same).item() == pytest.approx(2 / 3 * math.log(2), abs=1e-6)
    eye = torch.eye(3) * 50
    assert clip_loss(block, same) < clip_loss(eye, same) - 0.1          # with `same`: the block is right
    assert clip_loss(eye) < clip_loss(block) - 0.1                       # without: only the diagonal is
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.zeros(2, 3))


def test_zero_shot_and_retrieval_on_a_model_trained_for_a_few_steps():
    """Two kinds of images (a blank-ish one and a bar) and two prompts: a few steps of contrastive
    training are enough for zero-shot prediction and retrieval to get them right."""
    model = small_clip().train()
    g = torch.Generator().manual_seed(1)
    zeros = (torch.rand(16, 1, 28, 28, generator=g) * 0.2 - 1)
    ones = zeros.clone()
    ones[:, :, 4:24, 12:16] = 1.0
    images, prompts = torch.cat([zeros, ones]), ["zero"] * 16 + ["one"] * 16
    ids, mask = model.tokenize(prompts)
    same = (ids[:, None] == ids[None]).all(-1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = clip_loss(model(images, ids, mask), same)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    probs = zero_shot(model, images, ["zero", "one"])
    assert (probs.argmax(1) == torch.tensor([0] * 16 + [1] * 16)).all()
    assert set(retrieve(model, "one", images, k=8).tolist()) <= set(range(16, 32))


def test_prompts_that_lose_characters_or_everything_warn_by_name():
    tok = tokenizer()
    with pytest.warns(EmptyPromptWarning, match=r"'!!!'.*became the empty prompt"):
        ids, mask = tok.encode("!!!")
    assert mask.sum() == 2
    for prompt in ("七", "✓"):
        with pytest.warns(DroppedCharacterWarning, match=f"{prompt}.*dropped from 1 prompt.*'{prompt}'"):
            with pytest.warns(EmptyPromptWarning, match=f"'{prompt}'"):
                tok.encode(prompt)
    with pytest.warns(DroppedCharacterWarning, match=r"é.*'café seven' lost 'é'"):
        with pytest.warns(UnknownWordWarning, match=r"caf.*in prompt 'café seven'"):
            tok.encode(["a seven", "café seven"])


def test_blank_prompts_and_punctuation_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer().encode(["", "   ", "a thick seven.", "seven, thick!"])


def test_a_set_of_prompts_is_refused():
    with pytest.raises(TypeError, match="got a set.*PYTHONHASHSEED"):
        tokenizer().encode({"a seven", "a two"})
    with pytest.raises(ValueError, match="prompts is empty"):
        tokenizer().encode([])


def test_bad_tokenizer_arguments():
    with pytest.raises(TypeError, match="context_length must be an int"):
        Tokenizer(["a"], context_length=True)
    with pytest.raises(ValueError, match="context_length must be at least 3"):
        Tokenizer(["a"], context_length=2)
    with pytest.raises(TypeError, match="words must be a list of strings"):
        Tokenizer("a seven")
    with pytest.raises(TypeError, match="integer tensor of token ids"):
        tokenizer().decode(torch.zeros(1, 8))
    with pytest.raises(ValueError, match="ids must lie in"):
        tokenizer().decode(torch.tensor([[0, 999]]))
