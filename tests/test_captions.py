import pytest
import torch

from sdlib.captions import (DIGIT_WORDS, Styles, StyleThresholds, all_caption_words, box_width, caption,
                            classify_styles, random_captions, slant, stroke_width)


def bar(width: int, height: int = 20, shear: float = 0.0, left: int = 12) -> torch.Tensor:
    """A synthetic 28×28 image in [-1, 1]: a vertical bar `width` pixels thick, optionally sheared."""
    img = -torch.ones(1, 1, 28, 28)
    top = (28 - height) // 2
    for row in range(top, top + height):
        shift = round(shear * (top + height / 2 - row))            # the top moves right for shear > 0
        img[0, 0, row, left + shift:left + shift + width] = 1.0
    return img


def test_stroke_width_measures_the_bar_thickness():
    widths = stroke_width(torch.cat([bar(1), bar(2), bar(4)]))
    assert widths[0] < widths[1] < widths[2]
    # a w × 20 bar has area 20w and perimeter 2·20 + 2w: 2·area/perimeter = 40w / (40 + 2w)
    for w, got in zip([1, 2, 4], widths):
        assert got.item() == pytest.approx(40 * w / (40 + 2 * w), rel=1e-5)


def test_slant_sign_follows_the_lean():
    s = slant(torch.cat([bar(2, shear=0.4), bar(2), bar(2, shear=-0.4)]))
    assert s[0] > 0.2 and abs(s[1]) < 1e-6 and s[2] < -0.2


def test_box_width_and_blank_images():
    assert box_width(bar(3)).item() == 3
    assert box_width(bar(3, shear=0.5)).item() > 8
    assert box_width(-torch.ones(1, 1, 28, 28)).item() == 0


def test_style_functions_refuse_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        stroke_width(torch.zeros(28, 28))


def test_thresholds_are_terciles_and_round_trip():
    g = torch.Generator().manual_seed(0)
    images = torch.cat([bar(int(w), shear=float(s)) for w, s in zip(torch.randint(1, 5, (60,), generator=g),
                                                                      torch.rand(60, generator=g) - 0.5)])
    labels = torch.arange(60) % 10
    th = StyleThresholds.measure(images, labels)
    codes = classify_styles(images, labels, th)
    # the outer terciles hold about a third each (ties can move a few)
    for c in (codes.thickness, codes.lean):
        assert (c == -1).sum() >= 10 and (c == 1).sum() >= 10
    assert StyleThresholds.from_dict(th.to_dict()) == th


def test_captions_name_the_digit_and_only_true_styles():
    assert caption(7, thickness=1, lean=1) == "a thick seven leaning right"
    assert caption(3, thickness=-1, width=-1, numeral=True) == "a narrow thin 3"
    assert caption(7, template=1) == "the number seven" and caption(7, numeral=True, template=2) == "7"
    labels = torch.tensor([7] * 200)
    styles = Styles(torch.full((200,), 1), torch.full((200,), -1), torch.zeros(200, dtype=torch.long))
    caps = random_captions(labels, styles, torch.Generator().manual_seed(0))
    assert all(("seven" in c) or ("7" in c.split()) for c in caps)
    assert not any("thin" in c or "right" in c or "wide" in c for c in caps)
    assert any("thick" in c for c in caps) and any("leaning left" in c for c in caps)
    assert len(set(caps)) > 5
    vocab = set(all_caption_words())
    assert all(set(c.split()) <= vocab for c in caps) and set(DIGIT_WORDS) <= vocab
