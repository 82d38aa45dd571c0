"""The settings live in sdlib.recipes.configs: lessons read them there, never from a recipe, and the shipped
weights were trained with them. (The library outside sdlib.recipes imports no part of it: tests/test_layout.py.)"""
import ast
import dataclasses
import json
import re
from pathlib import Path

import nbformat
import pytest

from sdlib import pretrained
from sdlib.recipes.configs import classifier, clip, ddpm, latent_ddpm, text_ddpm, vae

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: str = "") -> set[str]:
    """Every module an (IPython) source imports, relative imports resolved against `package`."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    out = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}      # `from sdlib import recipes`
    return out


def test_imported_modules_sees_every_way_of_importing_the_recipes():
    for source in ["from sdlib.recipes.ddpm import LESSON_UNET", "import sdlib.recipes.clip",
                   "from sdlib import recipes", "if True:\n    from sdlib.recipes import ddpm"]:
        assert any(m.startswith("sdlib.recipes") for m in imported_modules(source)), source
    assert "sdlib.recipes.ddpm" in imported_modules("from .recipes.ddpm import X", package="sdlib")
    assert "sdlib.recipes.ddpm" in imported_modules("from ..ddpm import X", package="sdlib.recipes.configs")
    assert not any("recipes" in m for m in imported_modules("print('python -m sdlib.recipes.ddpm')"))


def test_no_notebook_imports_a_recipe():
    sources = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                sources[f"{path.name}, cell {i}"] = cell.source
    assert len(sources) > 20
    offenders = [where for where, source in sources.items()
                 if any(re.match(r"sdlib\.recipes(\.|$)", m) and not re.match(r"sdlib\.recipes\.(configs|benchmark)(\.|$)", m)
                        for m in imported_modules(source))]
    assert not offenders, f"import settings from sdlib.recipes.configs and code from the library, not a recipe: {offenders}"


def as_json(value):
    """What a value becomes in manifest.json (tuples turn into lists)."""
    return json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value))


# The manifest records what the shipped weights were trained with; changing a config without retraining
# would make the docs and the lessons describe a model that does not exist.
SHIPPED = {
    "classifier": (classifier.CLASSIFIER_CONFIG, None, {}),
    "ddpm": (ddpm.PRETRAINED_UNET, ddpm.PRETRAINED_TRAIN, {"schedule": ddpm.SCHEDULE,
                                                           "t_band": ddpm.PRETRAINED_T_BAND}),
    "vae": (vae.VAE_CONFIG, vae.VAE_TRAIN, {}),
    "clip": (clip.CLIP_CONFIG, clip.CLIP_TRAIN, {}),
    "text_ddpm": (text_ddpm.PRETRAINED_UNET, text_ddpm.PRETRAINED_TRAIN,
                  {"schedule": text_ddpm.SCHEDULE, "p_uncond": text_ddpm.P_UNCOND, "default_w": text_ddpm.DEFAULT_W}),
    "latent_ddpm": (latent_ddpm.LATENT_UNET, latent_ddpm.LATENT_TRAIN,
                    {"schedule": latent_ddpm.SCHEDULE, "p_uncond": latent_ddpm.P_UNCOND,
                     "default_w": latent_ddpm.DEFAULT_W}),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_was_trained_with_its_configs(name):
    # For ddpm: the band, schedule, U-Net and steps that lesson 03 and the docs describe it by.
    model_config, train_config, extra = SHIPPED[name]
    info = pretrained.entry(name)
    assert info["recipe"] == f"python -m sdlib.recipes.{name}"
    assert info["config"] == as_json(model_config)
    for key, value in extra.items():
        assert info["extra"][key] == as_json(value), key
    if train_config is not None:      # the shipped classifier was trained with --steps 2000 (docs/measured.md)
        assert info["metrics"]["steps"] == train_config.steps
    if name == "vae":
        assert info["metrics"]["beta"] == vae.BETA


def test_the_lessons_models_take_the_shipped_weights_and_schedule_where_the_docs_say_so():
    # Lesson 03's U-Net is the shipped ddpm's architecture, lesson 07's the shipped text_ddpm's: each takes the
    # shipped weights as they are (every name and shape), and the three diffusion models share one schedule.
    from sdlib.unet import UNet

    for config, name in ((ddpm.LESSON_UNET, "ddpm"), (text_ddpm.LESSON_UNET, "text_ddpm")):
        UNet(config).load_state_dict(pretrained.load_state(name), strict=True)
    schedules = {name: pretrained.entry(name)["extra"]["schedule"] for name in ("ddpm", "text_ddpm", "latent_ddpm")}
    assert len({json.dumps(s, sort_keys=True) for s in schedules.values()}) == 1, schedules