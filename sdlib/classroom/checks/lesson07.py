"""Checkers for lesson 07 (classifier-free guidance)."""
from __future__ import annotations

import math

import torch

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, compare_prediction, exercise, expect, expect_close,
                                    passed, read_answer)
from sdlib.classroom.quiz import Question
from sdlib.diffusion import drop_prompts
from sdlib.samplers import ClassifierFreeGuidance, guidance
from sdlib.unet import UNet


class _NullHolder(torch.nn.Module):
    def __init__(self, null: torch.Tensor):
        super().__init__()
        self.null_context = torch.nn.Parameter(null)

    empty_prompt = UNet.empty_prompt


def check_drop_prompt(drop_prompt) -> None:
    """drop_prompt(context, mask, null_context, drop) -> (context, mask) with the dropped prompts replaced
    by the one-token empty prompt: context (B, L, d), mask (B, L) bool, null_context (1, 1, d), drop (B,) bool."""
    g = torch.Generator().manual_seed(0)
    context = torch.randn(4, 5, 6, generator=g)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False], [True] * 2 + [False] * 3])
    null = torch.randn(1, 1, 6, generator=g)
    drop = torch.tensor([True, False, True, False])
    got = call(drop_prompt, context.clone(), mask.clone(), null.clone(), drop.clone())
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "return two things: (new_context, new_mask)")
    got_ctx, got_mask = as_tensor(got[0], "the new context", like=context), as_tensor(got[1], "the new mask")
    want_ctx, want_mask = drop_prompts(_NullHolder(null), context, mask, drop)
    expect(got_ctx.shape == context.shape, f"the new context must keep the shape {tuple(context.shape)}, got "
                                           f"{tuple(got_ctx.shape)}: expand the null token over B and L")
    if torch.allclose(got_ctx[1], null[0].expand(5, 6)):
        raise ExerciseError("Prompt 1 was replaced although drop[1] is False: replace where drop is True, keep the rest.")
    if torch.allclose(got_ctx[0], context[0]):
        raise ExerciseError("Prompt 0 should have been dropped (drop[0] is True): put the null token there.")
    expect_close(got_ctx, want_ctx, "the new context",
                 hint="a dropped row holds null_context at every one of its L positions (the mask then hides all "
                      "but the first); a kept row is the prompt's context, unchanged")
    expect(got_mask.dtype == torch.bool, f"the mask should stay boolean, got {got_mask.dtype}")
    if torch.equal(got_mask, mask):
        raise ExerciseError("The context is right but the mask was not changed: a dropped prompt is one token, "
                            "the empty prompt, so its mask is True at position 0 and False elsewhere.")
    if got_mask[0].all():
        raise ExerciseError("The dropped prompt's mask is all True: the copies of the null token after the first "
                            "would each get a vote in the attention; keep only position 0.")
    expect(torch.equal(got_mask, want_mask), f"the new mask is not right: got {got_mask.int().tolist()}, expected "
                                             f"{want_mask.int().tolist()}")
    passed("prompt dropout: the same model now sees prompts and, a part of the time, the empty prompt.")


def check_cfg(cfg) -> None:
    """cfg(eps_cond, eps_uncond, w) -> the guided noise prediction (w = 1: no guidance)."""
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for w in (0.0, 1.0, 3.0, 7.5):
        got = as_tensor(call(cfg, cond.clone(), uncond.clone(), w), f"the guided prediction at w={w}", like=cond)
        want = guidance(cond, uncond, w)
        if got.shape == want.shape and w == 3.0:
            if torch.allclose(got, w * (uncond - cond) + cond, atol=1e-6):
                raise ExerciseError("The two branches are swapped: start from the unconditional prediction and move "
                                    "w times (cond - uncond) away from it.")
            if torch.allclose(got, (1 + w) * cond - w * uncond, atol=1e-6):
                raise ExerciseError("That is Ho & Salimans' (2022) form, (1 + w) cond - w uncond, where w = 0 means "
                                    "no guidance. This course uses the form of Imagen and Stable Diffusion, where "
                                    "w = 1 means no guidance: w (cond - uncond) + uncond (the same as theirs with "
                                    "w = 1 + w_HS).")
            if torch.allclose(got, w * cond + (1 - w) * cond, atol=1e-6) or torch.allclose(got, w * cond, atol=1e-6):
                raise ExerciseError("The unconditional prediction is missing: w (cond - uncond) + uncond.")
        expect_close(got, want, f"the guided prediction at w={w}", hint="w · (eps_cond − eps_uncond) + eps_uncond",
                     rtol=1e-5, atol=1e-6)
    passed("classifier-free guidance: w = 0 is the unconditional model, w = 1 the conditional one, w > 1 beyond it.")


class _CountingModel(torch.nn.Module):
    """A stand-in conditional U-Net: eps = x · (1 + mean of the masked context) + t/1000; counts calls."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.null_context = torch.nn.Parameter(torch.full((1, 1, width), 0.3))
        self.calls: list[int] = []

    empty_prompt = UNet.empty_prompt

    def forward(self, x, t, context, mask=None):
        self.calls.append(x.shape[0])
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"the U-Net got {x.shape[0]} images but {context.shape[0]} contexts")
        m = torch.ones(context.shape[:2]) if mask is None else mask.float()
        value = (context.mean(-1) * m).sum(1) / m.sum(1).clamp(min=1)
        return x * (1 + value[:, None, None, None]) + t.float().reshape(-1, 1, 1, 1) / 1000


def check_guided_eps(guided_eps) -> None:
    """guided_eps(model, x, t, context, mask, w) -> guided eps from ONE forward pass on a doubled batch:
    the prompts' contexts for the first half, the model's null_context (one token, padded) for the second."""
    g = torch.Generator().manual_seed(2)
    model = _CountingModel()
    x, t = torch.randn(3, 1, 4, 4, generator=g), torch.tensor([10, 500, 900])
    context = torch.randn(3, 4, 6, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True] * 4])
    want = ClassifierFreeGuidance(model, context, 2.5, mask)(x, t)
    model.calls.clear()
    got = as_tensor(call(guided_eps, model, x.clone(), t.clone(), context.clone(), mask.clone(), 2.5), "the guided eps",
                    like=x)
    if len(model.calls) == 2:
        raise ExerciseError("The model was called twice: concatenate x with itself (and t, and the two contexts) "
                            "along the batch, call it once, then split the output with .chunk(2).")
    expect(len(model.calls) == 1, f"call the model exactly once, it was called {len(model.calls)} times")
    expect(model.calls[0] == 6, f"the model should see a batch of 2 × 3 = 6, it saw {model.calls[0]}")
    if got.shape == want.shape:
        null, _ = model.empty_prompt(3, context.shape[1])
        full_mask_null = ClassifierFreeGuidance(model, context, 2.5, mask, null, torch.ones(3, context.shape[1],
                                                                                           dtype=torch.bool))
        model.calls.clear()
        if torch.allclose(got, full_mask_null(x, t), atol=1e-6) and not torch.allclose(got, want, atol=1e-6):
            raise ExerciseError("The empty prompt is one token: its mask is True at position 0 only.")
    expect_close(got, want, "the guided eps", hint="eps_cond, eps_uncond = model(cat[x, x], cat[t, t], "
                 "cat[context, null], cat[mask, null_mask]).chunk(2); then w (cond - uncond) + uncond", rtol=1e-5,
                 atol=1e-6)
    passed("both branches in one forward pass: one call of the U-Net on a doubled batch per sampling step.")


def recorded_guidance() -> tuple[list[dict], dict]:
    """The pretrained text_ddpm model's guidance measurements, as its recipe recorded them in the manifest:
    (rows sorted by w, each with w, prompt_accuracy, thickness_obeyed, spread_ratio, classifier_fid, ...;
    the whole metrics entry, for n and the sampler)."""
    from sdlib.pretrained import entry

    metrics = entry("text_ddpm")["metrics"]
    return sorted(metrics["guidance"], key=lambda r: r["w"]), metrics


def _accuracy_at_w0() -> float:
    rows, _ = recorded_guidance()
    row = next((r for r in rows if r["w"] == 0), None)
    if row is None:
        raise RuntimeError("the text_ddpm manifest has no guidance measurement at w = 0")
    return row["prompt_accuracy"]


def _w0_explanation(prediction, measured) -> str:
    text = ("At w = 0 the guided prediction is ε_uncond alone: the prompt never reaches the output, so the digit "
            "drawn does not depend on it. The prompts cycle evenly through the ten digits, so whatever digits the "
            "unconditional model favours, a sample matches its prompt with probability Σ_d (1/10) p(d) = 1/10: "
            "chance. The gap from 10% is sampling noise (about ±1 point on 1,000 samples) and samples the "
            "classifier reads as some other digit.")
    if prediction > 0.5:
        text += (" A high prediction reads w = 0 as 'no guidance'. That is Ho & Salimans' convention (w' = 0 is the "
                 "conditional model); in this course no guidance is w = 1, and w = 0 removes the prompt altogether.")
    elif prediction < 0.05:
        text += (" Near zero would need the model to avoid the prompted digit. Ignoring the prompt is not avoiding "
                 "it: the samples are still digits, and one in ten matches its prompt by chance.")
    return text


@exercise("prediction")
def check_accuracy_prediction(predicted_accuracy_at_w0) -> None:
    """predicted_accuracy_at_w0() -> a fraction in [0, 1]: the prompt accuracy of the pretrained text_ddpm model at
    w = 0 (prompts "a zero" to "a nine" in turn; the classifier reads each sample's digit), as its recipe recorded
    it on 1,000 samples. Right within 5 percentage points."""
    _, metrics = recorded_guidance()
    compare_prediction(predicted_accuracy_at_w0, _accuracy_at_w0, low=0.0, high=1.0, tolerance=0.05,
                       what=f"the pretrained model's prompt accuracy at w = 0 ({metrics['n']:,} samples)",
                       fmt=lambda v: f"{v:.1%}", explanation=_w0_explanation)


GUIDANCE_TARGET = dict(prompt_accuracy=0.95, thickness_obeyed=0.95)     # the design decision's two targets


def _meets(row: dict) -> bool:
    return all(row[k] >= v for k, v in GUIDANCE_TARGET.items())


@exercise("design")
def check_guidance_scale(choose_guidance_scale) -> None:
    """choose_guidance_scale() -> one of the guidance scales w in the pretrained text_ddpm model's recorded table at
    which the digit (prompt accuracy) and the thickness word (thickness obeyed) are both obeyed in at least 95% of
    samples and which, among the scales that meet both, keeps the most variety (the highest spread ratio)."""
    rows, metrics = recorded_guidance()
    scales = ", ".join(f"{r['w']:g}" for r in rows)
    w = read_answer(choose_guidance_scale, low=0.0, name="choose_guidance_scale")
    row = next((r for r in rows if math.isclose(r["w"], w, rel_tol=0.0, abs_tol=1e-9)), None)
    if row is None:
        raise ExerciseError(f"w = {w:g} was not measured: the pretrained model's table holds w = {scales}. Choose one "
                            f"of them (the check reads the measurement; it does not guess between rows).")
    acc, thick, spread = row["prompt_accuracy"], row["thickness_obeyed"], row["spread_ratio"]
    result = (f"at w = {w:g} the pretrained model obeys the digit in {acc:.1%} and the thickness word in {thick:.1%} "
              f"of {metrics['n']:,} samples, with a spread of {spread:.2f} × real digits")
    need_acc, need_thick = GUIDANCE_TARGET["prompt_accuracy"], GUIDANCE_TARGET["thickness_obeyed"]
    if acc < need_acc:
        raise ExerciseError(f"{result}: the digit misses the {need_acc:.0%} target by {(need_acc - acc) * 100:.1f} "
                            f"points. Too little guidance: raise w.")
    if thick < need_thick:
        raise ExerciseError(f"{result}: the digit is obeyed, but the thickness word misses the {need_thick:.0%} target "
                            f"by {(need_thick - thick) * 100:.1f} points (style words need more guidance than the "
                            f"digit). Raise w.")
    best = max((r for r in rows if _meets(r)), key=lambda r: r["spread_ratio"])
    if best is not row:
        raise ExerciseError(f"{result}: both targets met, but w = {best['w']:g} meets them too and keeps more variety "
                            f"(spread {best['spread_ratio']:.2f} against {spread:.2f}). Guidance beyond what the targets "
                            f"need only makes the samples of a digit more alike: lower w.")
    passed(f"{result}: both targets met with the most variety left. The variety shrinks as w grows, so the best "
           f"scale is the smallest one that meets the targets.")


QUIZ = [
    Question(
        "A text-conditioned U-Net was trained with a prompt for every image, never with the empty prompt. What goes "
        "wrong when it is guided at w = 3?",
        options=["Nothing: guidance only rescales the conditional prediction, ε = w · ε_cond.",
                 "Guidance needs ε(x_t, t, ∅), and the model never learned what to predict without a prompt: its "
                 "output for the empty prompt is whatever its weights happen to give for an input never trained on, "
                 "so the guided step is not the one toward p(x_t) p(y | x_t)^w.",
                 "Guidance at w = 3 needs a separate classifier trained on noisy images.",
                 "Its cross-attention cannot take a prompt of one token."],
        answer=1,
        explanations=["No: the guided prediction is w (ε_cond − ε_uncond) + ε_uncond; it uses ε_uncond, which this "
                      "model never learned.",
                      "Yes: dropping the prompt part of the time (p_uncond = 0.1) is what teaches the same weights "
                      "the unconditional prediction. In section 9 such a model still follows the digit, but its "
                      "samples drift further from real handwriting as w grows.",
                      "No: that is classifier guidance, the older method; classifier-free guidance takes the "
                      "'classifier' from the difference of the model's own two predictions.",
                      "No: attention takes any number of tokens, one included; the empty prompt is one token."]),
    Question(
        "A paper reports samples at guidance scale 7.5 in Ho & Salimans' convention, (1 + w') ε_cond − w' ε_uncond. "
        "What scale gives the same samples in this course's convention?",
        options=["7.5", "6.5", "8.5", "1 / 7.5"],
        answer=2,
        explanations=["No: the two conventions count from different points (no guidance at w' = 0 there, at w = 1 "
                      "here), so the same number means different guidance.",
                      "No: that subtracts the one instead of adding it; w' is the smaller of the two numbers.",
                      "Yes: w ε_cond + (1 − w) ε_uncond equals (1 + w') ε_cond − w' ε_uncond when w = 1 + w'.",
                      "No: the relation is a shift by one, not an inverse; both scales grow with the strength of "
                      "guidance."]),
    Question(
        "In the recorded table, the spread (variety within a digit) falls as w grows. Why?",
        options=["Guidance pushes every sample away from the unconditional prediction toward images that make the "
                 "prompt most likely, so the samples of one prompt crowd toward its most typical images.",
                 "The sampler takes fewer steps at a larger w.",
                 "A larger w adds less noise at the start of sampling.",
                 "The classifier measuring the spread is less accurate at large w."],
        answer=0,
        explanations=["Yes: a larger w weights the 'classifier' term p(y | x_t) more, favouring the images it is "
                      "surest about; variety is what guidance trades for following the prompt.",
                      "No: the sampler and its number of steps are the same at every w.",
                      "No: x_T is drawn from N(0, I) at every w; the same seeds start every row of the table.",
                      "No: the classifier is more confident at large w (the table's 'confident' column rises), "
                      "and the images look more alike by eye too."]),
    Question(
        "With a negative prompt 'a thick seven' and the prompt 'a seven', what does the guided prediction compute?",
        options=["w (ε('a seven') − ε(∅)) + ε(∅), then subtracts ε('a thick seven').",
                 "The average of ε('a seven') and ε('a thick seven').",
                 "w ε('a thick seven') + (1 − w) ε('a seven').",
                 "w (ε('a seven') − ε('a thick seven')) + ε('a thick seven'): the negative prompt takes the empty "
                 "prompt's place, so guidance moves away from thick sevens."],
        answer=3,
        explanations=["No: the negative prompt replaces the unconditional branch; there is no third prediction "
                      "to subtract.",
                      "No: averaging would move halfway toward thick sevens, the opposite of what a negative prompt is "
                      "for.",
                      "No: that swaps the branches and guides toward the negative prompt.",
                      "Yes: the point guidance moves away from is now 'a thick seven', so the sevens come out thinner "
                      "(section 8 measures it)."]),
    Question(
        "The guided denoiser runs the U-Net once on a batch of 2B (prompts and empty prompts) instead of twice on B. "
        "What does that change?",
        options=["It halves the arithmetic of guidance.",
                 "It changes the samples: the two halves of the batch attend to each other.",
                 "The same arithmetic and the same numbers, in one call: fewer, larger operations use the hardware "
                 "better.",
                 "It makes the unconditional branch free, because its context is one token."],
        answer=2,
        explanations=["No: the U-Net still processes 2B images, so the operations are the same as two calls on B.",
                      "No: every image in a batch is processed independently (attention runs within one image and "
                      "its own prompt, and the normalisation is per image), so the output equals two separate calls.",
                      "Yes: one call with a batch of 2B replaces two launches of every layer with B each; sampling "
                      "still costs about twice an unguided step.",
                      "No: a short context makes cross-attention a little cheaper, but the convolutions and "
                      "self-attention on the image, most of the cost, run in full."]),
]
