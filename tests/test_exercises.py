"""Every exercise in every lesson: its checker passes the notebook's own solution, and fails both the
stub that the student notebooks get and a typical mistake (listed below, one per exercise).

Kinds (sdlib.classroom.checks.kind_of): for a prediction the "mistake" is an invalid answer (a wrong type, a choice not
offered, a number out of range), which must fail, while a valid but wrong prediction (WRONG_PREDICTIONS) must pass
and print the measurement and the gap. Each numbered lesson needs five exercises, two of the deeper kinds
(derivation, prediction, design), and a quiz; an appendix such as 03b may have fewer. Every QUIZ is checked for consistency and for its "## Quiz" section in the notebook."""
from __future__ import annotations

import ast
import importlib
import math

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import NOTEBOOKS, mnist_folder
from torch import nn

from sdlib.classroom.checks import KINDS, ExerciseError, kind_of
from sdlib.classroom.quiz import Question
from sdlib.classroom.student import has_solution, strip_solutions

# A typical mistake for each exercise, as code that replaces the solution cell.
MISTAKES = {
    ("01", "marginal_height"): "def marginal_height(joint):\n    return joint.sum(dim=1)\n",
    ("01", "posterior_age"): "def posterior_age(joint, h):\n    return joint[:, h]\n",
    ("01", "kl_gaussians"): ("def kl_gaussians(mu_q, sigma_q, mu_p, sigma_p):\n"
                             "    return torch.log(sigma_p / sigma_q) + (sigma_q + (mu_q - mu_p) ** 2) / (2 * sigma_p) - 0.5\n"),
    ("01", "elbo"): ("def elbo(x, q_mean, q_var, w, b, s):\n"
                     "    return -0.5 * (math.log(2 * math.pi * s ** 2) + ((x - b - w * q_mean) ** 2) / s ** 2)"
                     " - 0.5 * (q_var + q_mean ** 2 - 1 - torch.log(q_var))\n"),
    # indexed from 0 (alpha_bar[0] = ᾱ_1): the t / t-1 trap; the exercise asks for the table indexed by t
    ("02", "alpha_bar_from_betas"): "def alpha_bar_from_betas(betas):\n    return torch.cumprod(1 - betas, dim=0)\n",
    ("02", "add_noise"): "def add_noise(x0, eps, alpha_bar_t):\n    return alpha_bar_t * x0 + (1 - alpha_bar_t) * eps\n",
    ("02", "cosine_alpha_bar_fn"): ("def cosine_alpha_bar_fn(t, T, s=0.008):\n"
                                    "    return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2\n"),
    ("02", "posterior_mean_var"): ("def posterior_mean_var(x0, xt, beta_t, alpha_bar_t, alpha_bar_prev):\n"
                                   "    mean = (math.sqrt(alpha_bar_prev) * beta_t / (1 - alpha_bar_t)) * x0 \\\n"
                                   "        + (math.sqrt(1 - beta_t) * (1 - alpha_bar_prev) / (1 - alpha_bar_t)) * xt\n"
                                   "    return mean, beta_t\n"),
    # a prediction's "mistake" is an invalid answer: a choice that is not offered
    ("02", "predict_more_signal_at_500"): "def predict_more_signal_at_500():\n    return 'the cosine one'\n",
    ("01", "predict_shrink_factor"): "def predict_shrink_factor():\n    return 'ten'\n",   # a string, not a number
    ("01", "chain_marginal"): ("def chain_marginal(x0, alphas):\n"                     # the variances simply added
                               "    return torch.prod(alphas).sqrt() * x0, (1 - alphas).sum()\n"),
    ("03", "elbo_weight"): ("def elbo_weight(beta_t, alpha_t, alpha_bar_t, sigma2_t):\n"   # alpha_t forgotten
                            "    return beta_t ** 2 / (2 * sigma2_t * (1 - alpha_bar_t))\n"),
    ("03", "predict_fid_ratio"): "def predict_fid_ratio():\n    return -1.0\n",          # a ratio cannot be negative
    ("03", "simple_loss"): ("def simple_loss(model, x0, t, eps, alpha_bar_t):\n"
                            "    xt = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps\n"
                            "    return F.mse_loss(model(xt, t), x0)\n"),
    ("03", "train_ddpm"): ("def train_ddpm(model, optimizer, images, alpha_bar, steps, batch_size, generator):\n"
                           "    T, losses = len(alpha_bar) - 1, []\n"
                           "    for step in range(steps):\n"
                           "        idx = torch.randint(0, len(images), (batch_size,), generator=generator)\n"
                           "        t = torch.randint(0, T, (batch_size,), generator=generator)\n"
                           "        x0 = images[idx]\n"
                           "        eps = torch.randn(x0.shape, generator=generator)\n"
                           "        ab = alpha_bar[t].float().reshape(-1, 1, 1, 1)\n"
                           "        loss = F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)\n"
                           "        optimizer.zero_grad()\n"
                           "        loss.backward()\n"
                           "        optimizer.step()\n"
                           "        losses.append(loss.item())\n"
                           "    return losses\n"),
    ("03", "ddpm_step"): ("def ddpm_step(xt, eps_pred, t, beta_t, alpha_bar_t, z):\n"
                          "    alpha_t = 1 - beta_t\n"
                          "    mean = (xt - (1 - alpha_t) / math.sqrt(1 - alpha_bar_t) * eps_pred) / math.sqrt(alpha_t)\n"
                          "    return mean + math.sqrt(beta_t) * z\n"),
    ("03", "ddim_step"): ("def ddim_step(xt, eps_pred, alpha_bar_t, alpha_bar_prev):\n"
                          "    x0_pred = (xt - math.sqrt(1 - alpha_bar_t) * eps_pred) / math.sqrt(alpha_bar_t)\n"
                          "    return math.sqrt(alpha_bar_prev) * x0_pred\n"),
    ("04", "kl_diagonal"): ("def kl_diagonal(mu_q, logvar_q, mu_p, logvar_p):\n"       # KL(p || q), the other way
                            "    var_q, var_p = logvar_q.exp(), logvar_p.exp()\n"
                            "    return 0.5 * (logvar_q - logvar_p + (var_p + (mu_q - mu_p) ** 2) / var_q - 1).flatten(1).sum(1)\n"),
    ("04", "choose_latent_scale"): ("def choose_latent_scale(autoencoder, images):\n"        # samples, not the means
                                    "    with torch.no_grad():\n"
                                    "        return 1.0 / autoencoder.encode(images).sample().std().item()\n"),
    ("04", "reparameterize"): "def reparameterize(mu, logvar, eps):\n    return mu + torch.exp(logvar) * eps\n",
    ("04", "kl_standard_normal"): ("def kl_standard_normal(mu, logvar):\n"
                                   "    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).mean(1)\n"),
    ("04", "vae_loss_fn"): ("def vae_loss_fn(logits, x, mu, logvar, beta):\n"
                            "    recon = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2)\n"
                            "    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)\n"
                            "    return (recon + beta * kl).mean()\n"),
    ("05", "similarity_matrix"): ("def similarity_matrix(image_features, text_features, logit_scale):\n"
                                  "    return logit_scale.exp() * image_features @ text_features.T\n"),
    ("05", "contrastive_loss"): ("def contrastive_loss(logits):\n"
                                 "    return F.cross_entropy(logits, torch.arange(logits.shape[0]))\n"),
    ("05", "zero_shot_predict"): ("def zero_shot_predict(image_features, class_text_features):\n"
                                  "    return (image_features @ class_text_features.T).argmax(dim=1)\n"),
    ("05", "contrastive_loss_grad"): ("def contrastive_loss_grad(logits):\n"             # the rows' direction only
                                      "    n = logits.shape[0]\n"
                                      "    return (logits.softmax(dim=1) - torch.eye(n)) / n\n"),
    ("05", "predicted_zero_shot_accuracy"): "def predicted_zero_shot_accuracy():\n    return 97\n",   # percent
    ("06", "attention_block_facts"): ("def attention_block_facts(B, C, H, W, L, context_dim, heads):\n"   # K, V C×C
                                      "    return (B, heads, H * W, L), 18 * C * C + 23 * C\n"),
    ("06", "predicted_parameter_growth"): "def predicted_parameter_growth():\n    return float('nan')\n",
    ("06", "scaled_dot_product_attention"): ("def scaled_dot_product_attention(q, k, v, mask=None):\n"
                                             "    scores = q @ k.transpose(-2, -1)\n"
                                             "    if mask is not None:\n"
                                             "        scores = scores.masked_fill(~mask[:, None, None, :], float('-inf'))\n"
                                             "    weights = scores.softmax(dim=-1)\n"
                                             "    return weights @ v, weights\n"),
    ("06", "cross_attention"): ("def cross_attention(x, context, context_mask, to_q, to_k, to_v, to_out, heads):\n"
                                "    B, N, C = x.shape\n"
                                "    split = lambda t: t.view(B, t.shape[1], heads, C // heads).transpose(1, 2)\n"
                                "    q, k, v = split(to_q(x)), split(to_k(context)), split(to_v(context))\n"
                                "    out = F.scaled_dot_product_attention(q, k, v)\n"
                                "    return to_out(out.transpose(1, 2).reshape(B, N, C))\n"),
    ("06", "decoder_in_channels"): ("def decoder_in_channels(channels, blocks):\n"
                                    "    skips = [channels[0]]\n"
                                    "    for i, c in enumerate(channels):\n"
                                    "        skips += [c] * blocks + ([c] if i < len(channels) - 1 else [])\n"
                                    "    width, widths = channels[-1], []\n"
                                    "    for c in reversed(channels):\n"
                                    "        for _ in range(blocks + 1):\n"
                                    "            widths.append(width + skips.pop(0))\n"
                                    "            width = c\n"
                                    "    return widths\n"),
    ("07", "drop_prompt"): ("def drop_prompt(context, mask, null_context, drop):\n"
                            "    null = null_context.expand(context.shape[0], context.shape[1], -1)\n"
                            "    return torch.where(drop[:, None, None], null, context), mask\n"),
    ("07", "cfg"): "def cfg(eps_cond, eps_uncond, w):\n    return (1 + w) * eps_cond - w * eps_uncond\n",
    ("07", "guided_eps"): ("def guided_eps(model, x, t, context, mask, w):\n"
                           "    null = model.null_context.expand(context.shape[0], context.shape[1], -1)\n"
                           "    null_mask = torch.zeros_like(mask)\n"
                           "    null_mask[:, 0] = True\n"
                           "    eps_cond = model(x, t, context, mask)\n"
                           "    eps_uncond = model(x, t, null, null_mask)\n"
                           "    return w * (eps_cond - eps_uncond) + eps_uncond\n"),
    ("08", "sdedit_start"): ("def sdedit_start(z0, eps, strength, timesteps, alpha_bar):\n"
                             "    n = max(1, round(strength * len(timesteps)))\n"
                             "    remaining = timesteps[:n]\n"
                             "    ab = alpha_bar[remaining[0]]\n"
                             "    return ab.sqrt() * z0 + (1 - ab).sqrt() * eps, remaining\n"),
    ("07", "predicted_accuracy_at_w0"): "def predicted_accuracy_at_w0():\n    return '10%'\n",   # a string
    ("07", "choose_guidance_scale"): "def choose_guidance_scale():\n    return 3.0\n",   # more guidance than needed
    ("08", "predicted_flop_ratio"): "def predicted_flop_ratio():\n    return '1.5'\n",        # a string
    ("08", "choose_strength"): "def choose_strength():\n    return 0.8\n",                   # the style is lost
    ("08", "latent_mask"): "def latent_mask(masks):\n    return F.avg_pool2d(masks.float(), 4)\n",
    ("08", "inpaint_merge"): ("def inpaint_merge(z_prev, z_known, keep, t_prev, alpha_bar, eps):\n"
                              "    return keep * z_known + (1 - keep) * z_prev\n"),
    ("09", "score_from_eps"): ("def score_from_eps(eps_pred, alpha_bar_t):\n"          # the sign forgotten
                               "    return eps_pred / math.sqrt(1 - alpha_bar_t)\n"),
    ("09", "interpolate_and_velocity"): ("def interpolate_and_velocity(x0, eps, t):\n"   # t = 0 taken as the noise
                                         "    t = t.reshape(-1, *[1] * (x0.dim() - 1))\n"
                                         "    return t * x0 + (1 - t) * eps, eps - x0\n"),
    ("09", "flow_time"): "def flow_time(alpha_bar):\n    return 1 - alpha_bar\n",          # variances, not the ratio
    ("09", "euler_step"): "def euler_step(xt, v_pred, t, t_prev):\n    return xt + (t - t_prev) * v_pred\n",
    ("09", "predict_one_step_near_a_centre"): "def predict_one_step_near_a_centre():\n    return 50\n",  # percent
    ("09", "heun_step"): ("def heun_step(velocity, xt, t, t_prev):\n"                    # Euler only
                          "    return xt + (t_prev - t) * velocity(xt, t)\n"),
    ("09", "eps_and_x0_from_velocity"): ("def eps_and_x0_from_velocity(xt, v, t):\n"     # the coefficients swapped
                                         "    return xt + t * v, xt - (1 - t) * v\n"),
}


# A valid prediction that misses: the checker must teach from it (print the measurement and the gap), not fail.
WRONG_PREDICTIONS = {
    ("01", "predict_shrink_factor"): "def predict_shrink_factor():\n    return 100.0\n",
    ("03", "predict_fid_ratio"): "def predict_fid_ratio():\n    return 5.0\n",
    ("02", "predict_more_signal_at_500"): "def predict_more_signal_at_500():\n    return 'linear'\n",
    ("05", "predicted_zero_shot_accuracy"): "def predicted_zero_shot_accuracy():\n    return 0.3\n",
    ("06", "predicted_parameter_growth"): "def predicted_parameter_growth():\n    return 2\n",
    ("07", "predicted_accuracy_at_w0"): "def predicted_accuracy_at_w0():\n    return 0.9\n",
    ("08", "predicted_flop_ratio"): "def predicted_flop_ratio():\n    return 16.0\n",
    ("09", "predict_one_step_near_a_centre"): "def predict_one_step_near_a_centre():\n    return 1.0\n",
}

# Checkers that measure on MNIST digits (skipped, like the notebooks, where MNIST cannot be had).
NEEDS_MNIST = {("04", "choose_latent_scale"), ("05", "predicted_zero_shot_accuracy"), ("08", "choose_strength")}

# Every numbered lesson (not an appendix such as 03b): five exercises, two of the deeper kinds, and a quiz.
NUMBERED_LESSONS = tuple(p.name[:2] for p in NOTEBOOKS if p.name[:2].isdigit() and p.name[2] == "_")
DEEPER = {"derivation", "prediction", "design"}


def _exercises():
    found = []
    for path in NOTEBOOKS:
        lesson = path.name[:2]
        cells = [c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
        for i, cell in enumerate(cells):
            if not has_solution(cell.source):
                continue
            defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
            # The checker cell follows the exercise: at once, or (predict, then run) after the cell that runs it.
            following = []
            for later in cells[i + 1:]:
                if has_solution(later.source):
                    break
                following.append(later)
            checks = []
            for later in following:
                checks = [(n.func.id, n.args[0].id) for n in ast.walk(ast.parse(later.source))
                          if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")
                          and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id in defined]
                if checks:
                    break
            assert checks, f"{path.name}: no checker cell follows the exercise defining {defined}"
            for checker, argument in checks:
                assert argument in defined, f"{path.name}: {checker}({argument}) checks a function the exercise cell does not define"
                found.append(pytest.param(lesson, argument, checker, cell.source, id=f"{path.stem}:{argument}"))
    return found


EXERCISES = _exercises()


@pytest.fixture(autouse=True)
def _mnist_where_needed(request):
    """Skip a test of a checker that measures on MNIST where MNIST is not available (as the notebooks do)."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if (params.get("lesson"), params.get("name")) in NEEDS_MNIST:
        mnist_folder()


def _define(source: str, name: str):
    namespace = {"torch": torch, "math": math, "np": np, "F": F, "nn": nn}
    exec(compile(source, f"<exercise {name}>", "exec"), namespace)
    return namespace[name]


def _checker(lesson: str, name: str):
    return getattr(importlib.import_module(f"sdlib.classroom.checks.lesson{lesson}"), name)


def test_every_lesson_has_three_exercises_and_every_exercise_a_mistake():
    per_lesson = {}
    for p in EXERCISES:
        lesson, name = p.values[0], p.values[1]
        per_lesson[lesson] = per_lesson.get(lesson, 0) + 1
    assert all(per_lesson.get(nb.name[:2], 0) >= 3 for nb in NOTEBOOKS), per_lesson
    assert {(p.values[0], p.values[1]) for p in EXERCISES} == set(MISTAKES)


def _kinds(notebook: str) -> list[str]:
    """The kind of every exercise of one notebook ("02", "03b", ...)."""
    return [kind_of(_checker(p.values[0], p.values[2])) for p in EXERCISES if p.id.split("_")[0] == notebook]


@pytest.mark.parametrize("notebook", NUMBERED_LESSONS)
def test_lesson_has_five_exercises_two_of_them_deeper(notebook):
    kinds = _kinds(notebook)
    assert set(kinds) <= set(KINDS), kinds
    assert len(kinds) >= 5, f"lesson {notebook}: {len(kinds)} exercises ({kinds}), at least 5 needed"
    assert sum(k in DEEPER for k in kinds) >= 2, f"lesson {notebook}: kinds {kinds}, at least 2 of {sorted(DEEPER)}"


def test_every_prediction_has_a_wrong_prediction_to_teach_from():
    predictions = {(p.values[0], p.values[1]) for p in EXERCISES if kind_of(_checker(p.values[0], p.values[2])) == "prediction"}
    assert predictions and predictions == set(WRONG_PREDICTIONS)


@pytest.mark.parametrize("lesson, name, checker, source",
                         [p for p in EXERCISES if (p.values[0], p.values[1]) in WRONG_PREDICTIONS])
def test_a_wrong_but_valid_prediction_passes_with_a_lesson(lesson, name, checker, source, capsys):
    _checker(lesson, checker)(_define(WRONG_PREDICTIONS[(lesson, name)], name))     # does not raise
    out = capsys.readouterr().out
    assert "Correct" not in out and "Measured:" in out and "You predicted" in out, out


@pytest.mark.parametrize("lesson, name, checker, source", EXERCISES)
def test_checker_passes_the_solution(lesson, name, checker, source, capsys):
    _checker(lesson, checker)(_define(source, name))
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("lesson, name, checker, source", EXERCISES)
def test_checker_fails_the_student_stub(lesson, name, checker, source):
    stub_source, n = strip_solutions(source)
    assert n >= 1
    stub = _define(stub_source, name)
    with pytest.raises(ExerciseError, match="not written yet"):
        _checker(lesson, checker)(stub)


@pytest.mark.parametrize("lesson, name, checker, source", EXERCISES)
def test_checker_fails_a_typical_mistake(lesson, name, checker, source):
    wrong = _define(MISTAKES[(lesson, name)], name)
    with pytest.raises(ExerciseError) as info:
        _checker(lesson, checker)(wrong)
    assert "not written yet" not in str(info.value)


# Lesson 06: more typical mistakes, each of which must get its own hint (not only "wrong").
_ATTN = ("def scaled_dot_product_attention(q, k, v, mask=None):\n"
         "    scores = q @ k.transpose(-2, -1) / {scale}\n"
         "    if mask is not None:\n"
         "        scores = scores.masked_fill({fill})\n"
         "    weights = scores.softmax(dim={dim})\n"
         "    return weights @ v, weights\n")
_OK = dict(scale="math.sqrt(q.shape[-1])", fill="~mask[:, None, None, :], float('-inf')", dim=-1)
_CROSS = ("def cross_attention(x, context, context_mask, to_q, to_k, to_v, to_out, heads):\n"
          "    B, N, C = x.shape\n"
          "    split = lambda t: t.view(B, t.shape[1], heads, C // heads).transpose(1, 2)\n"
          "    q, k, v = split(to_q({q_from})), split(to_k({kv_from})), split(to_v({kv_from}))\n"
          "    mask = None if context_mask is None else context_mask[:, None, None, :]\n"
          "    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)\n"
          "    return {out}\n")
_CROSS_OK = dict(q_from="x", kv_from="context", out="to_out(out.transpose(1, 2).reshape(B, N, C))")


@pytest.mark.parametrize("name, checker, source, message", [
    ("scaled_dot_product_attention", "check_attention", _ATTN.format(**{**_OK, "scale": "q.shape[-1]"}), "1/sqrt"),
    ("scaled_dot_product_attention", "check_attention", _ATTN.format(**{**_OK, "dim": -2}), "wrong axis"),
    ("scaled_dot_product_attention", "check_attention", _ATTN.format(**{**_OK, "fill": "mask[:, None, None, :], float('-inf')"}), "True for real tokens"),
    ("scaled_dot_product_attention", "check_attention", _ATTN.format(**{**_OK, "fill": "~mask[:, None, None, :], 0.0"}), "float\\('-inf'\\)"),
    ("scaled_dot_product_attention", "check_attention", _ATTN.format(**{**_OK, "fill": "~mask[:, None, :, None], float('-inf')"}), "mask\\[:, None, None, :\\]"),
    ("cross_attention", "check_cross_attention", _CROSS.format(**{**_CROSS_OK, "q_from": "context", "kv_from": "x"}), "queries come from the image"),
    ("cross_attention", "check_cross_attention", _CROSS.format(**{**_CROSS_OK, "out": "to_out(out.reshape(B, N, C))"}), "merged in the wrong order"),
    ("cross_attention", "check_cross_attention", _CROSS.format(**{**_CROSS_OK, "out": "out.transpose(1, 2).reshape(B, N, C)"}), "output projection"),
    ("decoder_in_channels", "check_decoder_channels",
     MISTAKES[("06", "decoder_in_channels")].replace("width + skips.pop(0)", "width"), "concatenation"),
    ("decoder_in_channels", "check_decoder_channels", MISTAKES[("06", "decoder_in_channels")], "last-in, first-out"),
])
def test_lesson06_checkers_name_the_mistake(name, checker, source, message):
    with pytest.raises(ExerciseError, match=message):
        _checker("06", checker)(_define(source, name))


def _in_float64(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.double()
    if isinstance(value, (tuple, list)):
        return type(value)(_in_float64(v) for v in value)
    return value


@pytest.mark.parametrize("lesson, name, checker, source", EXERCISES)
def test_checker_accepts_the_solution_computed_in_float64(lesson, name, checker, source, capsys):
    """A right answer in another float dtype is right (it used to fail with "Double did not match Float")."""
    solution = _define(source, name)

    def in_float64(*args, **kwargs):
        return _in_float64(solution(*args, **kwargs))

    in_float64.__name__ = name
    _checker(lesson, checker)(in_float64)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("lesson, name, checker, source", EXERCISES)
def test_checker_says_when_the_function_returns_none(lesson, name, checker, source):
    """A forgotten `return` is named as such, not "Could not infer dtype of NoneType"."""
    def forgot_return(*args, **kwargs):
        solution = _define(source, name)
        solution(*args, **kwargs)

    with pytest.raises(ExerciseError, match="your function returned None"):
        _checker(lesson, checker)(forgot_return)


def test_a_half_precision_answer_is_refused_with_the_reason():
    def ddpm_step(xt, eps_pred, t, beta_t, alpha_bar_t, z):
        mean = (xt - beta_t / math.sqrt(1 - alpha_bar_t) * eps_pred) / math.sqrt(1 - beta_t)
        return (mean + (math.sqrt(beta_t) * z if t > 1 else 0)).half()

    with pytest.raises(ExerciseError, match="float16.*Compute in float32"):
        _checker("03", "check_ddpm_step")(ddpm_step)


# Lesson 02, Exercise 1: each usual mistake in the table of ᾱ_t gets its own message.
_ALPHA_BAR = "def alpha_bar_from_betas(betas):\n    one = torch.ones(1, dtype=betas.dtype)\n    return {}\n"


@pytest.mark.parametrize("answer, message", [
    ("torch.cumprod(1 - betas, dim=0)", "t / t-1 trap"),                                  # T entries, from ᾱ_1
    ("torch.cat([torch.cumprod(1 - betas, dim=0), one])", "t / t-1 trap"),                 # T + 1, shifted
    ("torch.cat([one, torch.cumprod(betas, dim=0)])", "multiplied the betas"),
    ("1 - torch.cumsum(betas, dim=0)", "first-order approximation"),
    ("torch.cat([0 * one, torch.cumprod(1 - betas, dim=0)])", "Entry 0 should be"),
])
def test_lesson02_alpha_bar_checker_names_the_mistake(answer, message):
    with pytest.raises(ExerciseError, match=message):
        _checker("02", "check_alpha_bar")(_define(_ALPHA_BAR.format(answer), "alpha_bar_from_betas"))


# Lesson 03: the training loop's usual mistakes, each with its own hint.
_LOOP = MISTAKES[("03", "train_ddpm")].replace("torch.randint(0, T, ", "torch.randint(1, T + 1, ")


@pytest.mark.parametrize("change, message", [
    (("torch.randint(1, T + 1, ", "torch.randint(0, T, "), "drawn from"),
    (("ab.sqrt() * x0 + (1 - ab).sqrt() * eps", "ab * x0 + (1 - ab) * eps"), "square roots"),
    (("        optimizer.zero_grad()\n", ""), "zero_grad"),
    (("t), eps)", "t), eps, reduction='sum')"), "not the sum"),
    (("t), eps)", "t), x0)"), "predicts the noise"),
    (("        optimizer.step()\n", ""), "optimizer.step"),
])
def test_lesson03_training_loop_checker_names_the_mistake(change, message):
    with pytest.raises(ExerciseError, match=message):
        _checker("03", "check_training_loop")(_define(_LOOP.replace(*change), "train_ddpm"))


@pytest.mark.parametrize("change, message", [
    (("(batch_size,), generator=generator)\n        x0", "(batch_size,))\n        x0"), "torch's global generator"),
    (("torch.randn(x0.shape, generator=generator)", "torch.randn(x0.shape)"), "torch's global generator"),
    (("ab = alpha_bar[t].float()", "ab = alpha_bar[t]"), "mixed float64 and float32"),
])
def test_lesson03_training_loop_checker_names_a_forgotten_generator_and_the_float64_table(change, message):
    assert change[0] in _LOOP
    with pytest.raises(ExerciseError, match=message):
        _checker("03", "check_training_loop")(_define(_LOOP.replace(*change), "train_ddpm"))


def test_lesson03_ddpm_step_gets_z_none_at_t_1_as_in_the_lesson():
    seen = []

    def ddpm_step(xt, eps_pred, t, beta_t, alpha_bar_t, z):
        seen.append((t, z is None))
        mean = (xt - beta_t / math.sqrt(1 - alpha_bar_t) * eps_pred) / math.sqrt(1 - beta_t)
        return mean + math.sqrt(beta_t) * z                  # adds z at t = 1 too
    with pytest.raises(ExerciseError, match="At t = 1 the caller passes z = None"):
        _checker("03", "check_ddpm_step")(ddpm_step)
    assert seen[-1] == (1, True) and all(not none for t, none in seen[:-1])


def test_lesson03_training_loop_reference_passes(capsys):
    _checker("03", "check_training_loop")(_define(_LOOP, "train_ddpm"))
    assert "Correct" in capsys.readouterr().out


# --- quizzes --------------------------------------------------------------------------------------------

def _quizzes():
    """(lesson, QUIZ) for every lesson checks module that has a QUIZ."""
    found = []
    for path in NOTEBOOKS:
        lesson = path.name.split("_")[0]
        try:
            module = importlib.import_module(f"sdlib.classroom.checks.lesson{lesson}")
        except ModuleNotFoundError:
            continue
        if hasattr(module, "QUIZ"):
            found.append(pytest.param(lesson, module.QUIZ, path, id=f"lesson{lesson}"))
    return found


QUIZZES = _quizzes()


def test_the_lessons_with_deeper_exercises_have_a_quiz():
    assert set(NUMBERED_LESSONS) <= {p.values[0] for p in QUIZZES}


@pytest.mark.parametrize("lesson, quiz, path", QUIZZES)
def test_quiz_is_consistent(lesson, quiz, path):
    assert isinstance(quiz, list) and 3 <= len(quiz) <= 5, f"lesson {lesson}: {len(quiz)} questions, 3 to 5 wanted"
    for q in quiz:
        assert isinstance(q, Question)
        assert len(q.explanations) == len(q.options) >= 3, q.text
        assert 0 <= q.answer < len(q.options)
        # exactly one option is right: its explanation says so, and every other one says why it is wrong
        verdicts = [e.split(":")[0].split(",")[0].strip() for e in q.explanations]
        assert [v.startswith("Yes") for v in verdicts].count(True) == 1 and verdicts[q.answer].startswith("Yes"), q.text
        assert all(v.startswith("No") for i, v in enumerate(verdicts) if i != q.answer), q.text
        assert len(set(q.explanations)) == len(q.explanations), q.text
    assert len({q.text for q in quiz}) == len(quiz)


@pytest.mark.parametrize("lesson, quiz, path", QUIZZES)
def test_notebook_shows_its_quiz_before_the_summary(lesson, quiz, path):
    cells = nbformat.read(str(path), as_version=4).cells
    headings = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("## Quiz")]
    assert len(headings) == 1, f"{path.name}: one markdown cell starting with '## Quiz' wanted, found {len(headings)}"
    code = next(c for c in cells[headings[0] + 1:] if c.cell_type == "code")
    tree = ast.parse(code.source)
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "show_quiz"]
    assert (f"sdlib.classroom.checks.lesson{lesson}", "QUIZ") in imports and ("sdlib.classroom.quiz", "show_quiz") in imports, code.source
    assert calls and isinstance(calls[0].args[0], ast.Name) and calls[0].args[0].id == "QUIZ", code.source
    summary = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Summary" in c.source]
    assert summary and headings[0] < summary[0], f"{path.name}: the quiz should come before the summary"


def test_a_failed_check_shows_its_message_not_the_checkers_source():
    """IPython renders an ExerciseError as its message (the checker's source would show the answer); where the
    learner's own function raised, their lines come first."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    try:
        with capture_output() as wrong:
            shell.run_cell("from sdlib.classroom.checks.lesson01 import check_kl_gaussians\n"
                           "check_kl_gaussians(lambda mu_q, sigma_q, mu_p, sigma_p: (mu_q - mu_p) ** 2)")
        with capture_output() as broken:
            shell.run_cell("def kl_with_a_typo(mu_q, sigma_q, mu_p, sigma_p):\n    return mu_q - sigma_qq\n"
                           "check_kl_gaussians(kl_with_a_typo)")
    finally:
        InteractiveShell.clear_instance()           # the other tests run without an IPython shell
    assert wrong.stdout.strip().startswith("ExerciseError: KL(q || p) is not right"), wrong.stdout
    assert "Traceback" not in wrong.stdout and "def check_kl_gaussians" not in wrong.stdout
    assert "lesson01.py" not in wrong.stdout and "expect_close(" not in wrong.stdout
    assert "Your function raised an error here:" in broken.stdout and "return mu_q - sigma_qq" in broken.stdout
    assert "NameError: name 'sigma_qq' is not defined" in broken.stdout and "lesson01.py" not in broken.stdout
