"""Input checks shared by the library: each raises a ValueError/TypeError that says what was
wrong and what was expected, instead of a shape error from deep inside a model.

The public entry points (models, schedules, metrics, checkers, pipeline) call these functions
rather than repeating the checks, so that one kind of mistake always gets the same message.

Dtype policy: models accept floating-point inputs of any precision and convert them to their own
dtype on the way in (`to_model_dtype`) and their answers back to the input's dtype; integer and
bool tensors are refused, with a hint that names the conversion that gives what is expected.
Bools are not numbers here: `steps=True` is a mistake, not 1.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import threading
import warnings

import torch

MODEL_RANGE = (-1.0, 1.0)
UNIT_RANGE = (0.0, 1.0)


# -- tensors --------------------------------------------------------------------------------------

MAX_SEED = 2**63 - 1                     # the largest seed torch.manual_seed and torch.Generator take


def tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device, which holds shapes but no values: nothing can be computed "
                         f"from it; make it on 'cpu', 'cuda' or 'mps'")
    return x


def device(value, name: str = "device") -> torch.device:
    """A device torch knows and this course can compute on: 'cpu', 'cuda', 'cuda:1', 'mps' or a torch.device."""
    if isinstance(value, bool) or not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a string such as 'cpu', 'cuda' or 'mps', or a torch.device, got "
                        f"{type(value).__name__} {value!r}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a device torch knows: use 'cpu', 'cuda' (or 'cuda:0', ...) or "
                         f"'mps'") from None
    if dev.type == "meta":
        raise ValueError(f"{name} 'meta' holds shapes but no values: nothing can be computed or drawn there; use "
                         f"'cpu', 'cuda' or 'mps'")
    return dev


def seed(value, name: str = "seed") -> int:
    """A seed: an int from 0 to 2**63 - 1 (a str such as "0" is refused, not parsed)."""
    hint = f" (the string {value!r}? pass the number, {value.strip()})" if isinstance(value, str) and \
        value.strip().isdigit() else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int from 0 to 2**63 - 1, got {type(value).__name__} {value!r}{hint}")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must lie between 0 and 2**63 - 1 (what torch's generators take), got {value}")
    return int(value)


def instance(value, cls: type, name: str, hint: str = ""):
    """value must be a `cls` (a config object, a model); `hint` says where to get one."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__module__}.{cls.__qualname__}, got {type(value).__name__}{hint}")
    return value


def _conversion_hint(x: torch.Tensor, value_range) -> str:
    """How to get a floating-point tensor in `value_range` from the integer or bool tensor x."""
    if x.dtype == torch.bool:
        return "convert it with x.float()"
    channel = ", then add the channel dimension with [:, None]" if x.dim() == 3 else ""
    if tuple(value_range or ()) == MODEL_RANGE:
        return f"pixels in [0, 255] become float32 images in [-1, 1] with sdlib.data.to_model_range(x){channel}"
    if tuple(value_range or ()) == UNIT_RANGE:
        return f"pixels in [0, 255] become float32 images in [0, 1] with x.float() / 255{channel}"
    return "convert it with x.float()"


def floating(x, name: str, *, value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """x must be a floating-point tensor; `value_range` (what the caller expects) picks the hint for
    integer pixels, so that following the hint gives an input the caller accepts."""
    tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 is usual), got dtype {x.dtype}: "
                        f"{_conversion_hint(x, value_range)}")
    return x


def nonempty(x: torch.Tensor, name: str, what: str = "image") -> torch.Tensor:
    if x.numel() == 0:
        if x.dim() and x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): give at least one {what}")
        raise ValueError(f"{name} holds no values (shape {tuple(x.shape)})")
    return x


def _extremes(x: torch.Tensor) -> tuple[float, float]:
    """(min, max) of a non-empty tensor in one read-back; a NaN anywhere makes both NaN."""
    return tuple(torch.stack(x.detach().aminmax()).tolist())


_LOOP = threading.local()


@contextlib.contextmanager
def inside_loop():
    """Mark the steps of a loop whose inputs were checked at its door (sdlib.samplers.sample, sdlib.train.fit):
    inside, the functions it calls check shapes and dtypes but read no value back, which on a GPU would stall
    every step. The loop checks its result itself (sample: divergence; fit: a non-finite loss)."""
    depth = getattr(_LOOP, "depth", 0)
    _LOOP.depth = depth + 1
    try:
        yield
    finally:
        _LOOP.depth = depth


def reads_values(x: torch.Tensor) -> bool:
    """Whether a value check may read `x` back: at a door, yes; not inside a loop's steps (`inside_loop`),
    nor for a CUDA tensor while autograd records (a training step). Shapes and dtypes are checked everywhere."""
    return not (getattr(_LOOP, "depth", 0) or (x.is_cuda and torch.is_grad_enabled()))


def _refuse_non_finite(lo: float, hi: float, name: str, hint: str = "") -> None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = "NaN" if math.isnan(lo) else "infinite"
        raise ValueError(f"{name} contains {bad} values{hint}")


def finite(x: torch.Tensor, name: str, hint: str = "") -> torch.Tensor:
    """No NaN or infinite values in x (a float tensor)."""
    if x.numel() and reads_values(x):
        _refuse_non_finite(*_extremes(x), name, hint)
    return x


def shaped(x, name: str, layout: str, *, what: str = "item", **sizes) -> torch.Tensor:
    """x must have one dimension per letter of `layout` ("B L C"), with the sizes given as keywords
    (C=64) or as numbers in the layout ("B 4 7 7"). The batch dimension B is never empty (an empty
    batch is refused as such, naming `what` it is a batch of)."""
    tensor(x, name)
    dims = layout.split()
    if dims and dims[0] == "B" and x.dim() and x.shape[0] == 0:       # before the other sizes: say what is wrong
        nonempty(x, name, what)
    want = [int(d) if d.isdigit() else sizes.get(d) for d in dims]
    if x.dim() != len(dims) or any(w is not None and x.shape[i] != w for i, w in enumerate(want)):
        shown = ", ".join(d if d == "B" or w is None else str(w) for d, w in zip(dims, want))
        shown += "," if len(dims) == 1 else ""
        batch = f" with B = {sizes['B']}" if sizes.get("B") is not None else ""
        raise ValueError(f"{name} must have shape ({shown}){batch}, got {tuple(x.shape)}")
    return x


def matrix(x, name: str, *, columns: int | None = None, min_rows: int = 1, why: str = "") -> torch.Tensor:
    """A finite float matrix (N, D) of N >= min_rows row vectors (features, probabilities)."""
    floating(x, name)
    shaped(x, name, "N D", D=columns)
    nonempty(x, name, "row")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} has {x.shape[0]} row(s), at least {min_rows} are needed{why}")
    return finite(x, name)


def labels(y, name: str, n: int, classes: int | None = None) -> torch.Tensor:
    """Class indices: an integer tensor (n,), each in [0, classes)."""
    tensor(y, name)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices (torch.long), got dtype {y.dtype}")
    if y.dim() == 0:
        raise ValueError(f"{name} must have shape (N,), one class per image, got a single number (a 0-d tensor): "
                         f"write torch.tensor([{int(y)}]) for one image")
    shaped(y, name, "N", N=n)
    if classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{name} must lie in [0, {classes - 1}], got values in [{int(y.min())}, {int(y.max())}]")
    return y


def like(a: torch.Tensor, b, name_a: str, name_b: str) -> torch.Tensor:
    """b must be a tensor of a's shape, on a's device (two inputs that are added or compared)."""
    tensor(b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")
    return b


def mask(m, name: str, shape: tuple[int, ...], of: str = "the context", *, read_values: bool = True) -> torch.Tensor:
    """A (B, L) token mask: bool (or 0/1 integers), True for real tokens, the shape of `of`, and at
    least one real token per row (attention over no keys at all is 0/0, NaN). read_values=False
    checks only dtype and shape, for layers deep inside a model, where reading values back from
    the GPU would stall it (the model's entry point reads them once)."""
    tensor(m, name)
    if m.is_floating_point() or m.is_complex():
        raise TypeError(f"{name} must be a bool tensor, True for real tokens, got dtype {m.dtype}")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (B, L) = {tuple(shape)} to match {of}, got {tuple(m.shape)}")
    if not (read_values and reads_values(m)):
        return m
    if m.dtype != torch.bool and bool(((m != 0) & (m != 1)).any()):
        raise ValueError(f"{name} must hold only True/False (or 1/0), got other values")
    if m.numel() and not bool(m.bool().any(dim=-1).all()):
        raise ValueError(f"every row of {name} needs at least one True (a real token): a prompt's mask has at "
                         f"least its <start> token")
    return m


def _shape_hint(x: torch.Tensor, channels: int | None) -> str:
    if x.dim() != 3:
        return ""
    if channels is not None and x.shape[0] != channels and channels == 1:
        return " (a batch of (H, W) images? add the channel dimension with x[:, None])"
    return " (a single image? add a batch dimension with x[None])"


def images(x, name: str = "images", *, channels: int | None = None, size: tuple[int, int] | None = None,
           value_range: tuple[float, float] | None = MODEL_RANGE, tolerance: float = 1e-3) -> torch.Tensor:
    """Check a batch of images of shape (B, C, H, W), finite; by default with values in [-1, 1]."""
    floating(x, name, value_range=value_range)
    if x.dim() and x.shape[0] == 0:
        nonempty(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}{_shape_hint(x, channels)}")
    nonempty(x, name)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)} "
                         f"with {x.shape[1]}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} must be {size[0]}x{size[1]}, got {x.shape[-2]}x{x.shape[-1]}")
    if value_range is None:
        return finite(x, name)
    return values_in(x, name, value_range, tolerance)


def eight_bit_images(x, name: str = "images", *, tolerance: float = 1e-3) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] whose values are 8-bit pixels k / 255 mapped to [-1, 1]: what a
    discrete (per-pixel bin) likelihood is defined on."""
    images(x, name)
    if reads_values(x):
        pixels = (x.detach().double() + 1) * 127.5
        off = (pixels - pixels.round()).abs().max().item()
        if off > tolerance * 127.5:
            raise ValueError(f"{name} must be 8-bit images mapped to [-1, 1] (values k/255·2 - 1 for k in 0..255), "
                             f"got a value {off / 127.5:.3g} away from the nearest one: a discrete likelihood needs "
                             f"quantised pixels (sdlib.data.load_mnist gives them; round generated samples with "
                             f"((x + 1) * 127.5).round() / 127.5 - 1)")
    return x


def values_in(x: torch.Tensor, name: str, value_range: tuple[float, float] = MODEL_RANGE,
              tolerance: float = 1e-3) -> torch.Tensor:
    """Every value of x (a float tensor) finite and in value_range, give or take `tolerance`; the error
    names the conversion when x looks like pixels in [0, 255] or images in the other range."""
    lo, hi = value_range
    if not x.numel() or not reads_values(x):
        return x
    xmin, xmax = _extremes(x)
    _refuse_non_finite(xmin, xmax, name)
    if xmin < lo - tolerance or xmax > hi + tolerance:
        hint = ""
        if xmin >= 0.0 and xmax > 1.0 + tolerance and tuple(value_range) == MODEL_RANGE:
            hint = " (pixels in [0, 255]? sdlib.data.to_model_range maps them to [-1, 1])"
        elif xmin >= 0.0 and xmax > 1.0 + tolerance and tuple(value_range) == UNIT_RANGE:
            hint = " (pixels in [0, 255]? divide them by 255)"
        elif xmin >= -1.0 - tolerance and tuple(value_range) == UNIT_RANGE:
            hint = " (images in [-1, 1]? sdlib.data.to_unit_range maps them to [0, 1])"
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got values in [{xmin:.3g}, {xmax:.3g}]{hint}")
    return x


def within(x: torch.Tensor, name: str, low: float, high: float, *, low_open: bool = False) -> torch.Tensor:
    """Every value of x in [low, high] (or (low, high] with low_open). Written so that NaN is out of range:
    a check "refuse if x < low or x > high" would let NaN through, since every comparison with NaN is False."""
    if x.numel() and reads_values(x):
        inside = ((x > low) if low_open else (x >= low)) & (x <= high)
        if not bool(inside.all()):
            lo, hi = _extremes(x)
            what = "NaN" if math.isnan(lo) else f"values in [{lo:.3g}, {hi:.3g}]"
            raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low:g}, {high:g}], got {what}")
    return x


def unit_range_warning(x: torch.Tensor, name: str) -> None:
    """Warn when a batch of several images meant for [-1, 1] never goes below 0: almost surely images in
    [0, 1], which lie inside [-1, 1] and so pass every range check. For the doors that take a user's images
    (encoding, the metrics, the likelihood bound), not for training steps."""
    if x.dim() < 2 or x.shape[0] < 2 or not x.is_floating_point() or not reads_values(x):
        return
    lo, hi = _extremes(x)
    if 0.0 <= lo and hi <= 1.0:
        warnings.warn(f"{name} lie in [{lo:.3g}, {hi:.3g}], never below 0: images in [0, 1]? This expects images "
                      f"in [-1, 1]; sdlib.data.from_unit_range maps [0, 1] to [-1, 1]", UserWarning, stacklevel=3)


def model_range(x, name: str, *, nan_hint: str = "") -> torch.Tensor:
    """Data in model range: clean images in [-1, 1], or them plus Gaussian noise, or latents of unit
    variance. Any shape (B, ...) with B >= 1; finite. Values that are all >= 0 and reach above 10 are
    refused as pixels in [0, 255]: images stay within 1, latents (even of a blank image, which may
    all be positive) within a few units, and noise and a diverging sampler, whose values can be in
    the hundreds, have both signs."""
    floating(x, name, value_range=MODEL_RANGE)
    if x.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension (B, ...), got a scalar")
    nonempty(x, name)
    if not reads_values(x):
        return x
    lo, hi = _extremes(x)
    _refuse_non_finite(lo, hi, name, nan_hint)
    if lo >= 0 and hi > 10:
        raise ValueError(f"{name} has values in [{lo:.3g}, {hi:.3g}]: expected model range, images in [-1, 1] "
                         f"(plus Gaussian noise for noisy images); pixels in [0, 255] become [-1, 1] with "
                         f"sdlib.data.to_model_range")
    return x


def generator(g, name: str = "generator"):
    """None, or a torch.Generator (made with torch.Generator().manual_seed(seed))."""
    if g is not None and not isinstance(g, torch.Generator):
        seed = isinstance(g, numbers.Integral)
        hint = ": pass torch.Generator().manual_seed(seed) instead of the seed" if seed else ""
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(g).__name__}{hint}")
    return g


def to_model_dtype(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """x in the dtype of the module's floating-point parameters (float64 or half inputs to a float32
    model would otherwise fail inside torch with "Input type (double) and bias type (float)...")."""
    if torch.is_autocast_enabled(x.device.type):          # autocast picks the dtype of every operation itself
        return x
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), x.dtype)
    return x if x.dtype == dtype else x.to(dtype)


def in_model_dtype(module: torch.nn.Module, fn, x: torch.Tensor) -> torch.Tensor:
    """fn(x) computed in the module's dtype; the answer comes back in x's dtype when x had to be converted
    (under autocast nothing is converted, and the answer stays in autocast's dtype)."""
    converted = to_model_dtype(x, module)
    out = fn(converted)
    return out if converted.dtype == x.dtype else out.to(x.dtype)


# -- time steps ---------------------------------------------------------------------------------

def _one_per_image(t: torch.Tensor, batch: int | None, name: str, unit: str, single: str,
                   values: str = "") -> torch.Tensor:
    """A 0-d tensor repeated for the batch, or a (B,) tensor whose B matches `batch`; else a clear error
    that names the unit ("time step") and, where given, its values (" in [0, 1]")."""
    if t.dim() == 0:
        t = t.reshape(1).expand(1 if batch is None else batch)
    if t.dim() != 1:
        raise ValueError(f"{name} must be a single {single} or have shape (B,), one {unit}{values} per image, "
                         f"got shape {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{name} has {t.shape[0]} entries but the batch has {batch} images: "
                         f"give one {unit} per image, or a single {single}")
    return t


def timesteps(t, T: int, batch: int | None = None, *, lowest: int = 0, name: str = "t") -> torch.Tensor:
    """Time steps as a 1-D int64 tensor, one per image: an int (the same for the whole batch), a 0-d
    integer tensor, or an integer tensor of shape (B,); every value in [lowest, T]. Floats are refused,
    not truncated (2.7 is no time step), and so are bools."""
    if isinstance(t, bool) or (isinstance(t, torch.Tensor) and t.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer time step or an integer tensor of them, got a bool")
    if isinstance(t, numbers.Integral):
        t = torch.full((1 if batch is None else batch,), int(t), dtype=torch.long)
    if not isinstance(t, torch.Tensor):
        floats = " (time steps are integers; a float is refused, not truncated)" if isinstance(t, numbers.Real) else ""
        raise TypeError(f"{name} must be an int or an integer tensor of time steps in [{lowest}, {T}], "
                        f"got {type(t).__name__} {t!r}{floats}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer time steps (an integer tensor, e.g. torch.long), got dtype "
                        f"{t.dtype}: a float time step such as 2.7 would be truncated")
    t = _one_per_image(t, batch, name, "time step", "int")
    lo, hi = _extremes(t) if t.numel() and reads_values(t) else (lowest, lowest)
    if lo < lowest or hi > T:
        raise ValueError(f"{name} must lie in [{lowest}, {T}] (T={T}), got values in [{lo}, {hi}]")
    return t.long()


def continuous_times(t, batch: int | None = None, *, name: str = "t") -> torch.Tensor:
    """Continuous times t in [0, 1] (flow matching: t = 0 data, t = 1 noise) as a 1-D float tensor, one
    per image: a number (the same for the whole batch), a 0-d tensor or a tensor of shape (B,); finite.
    Integer tensors are accepted when their values lie in [0, 1]; above 1 they are refused as time steps
    0..T of a discrete-time model."""
    if _is_bool(t):
        raise TypeError(f"{name} must be a float time in [0, 1] or a float tensor of them, got a bool")
    if isinstance(t, numbers.Real):
        t = torch.full((1 if batch is None else batch,), float(t))
    if not isinstance(t, torch.Tensor) or t.is_complex():
        raise TypeError(f"{name} must be a float time in [0, 1] or a float tensor of them (one per image), "
                        f"got {type(t).__name__} {t!r}")
    t = _one_per_image(t, batch, name, "time", "number", values=" in [0, 1]")
    if t.numel() and reads_values(t):
        lo, hi = _extremes(t.float())
        _refuse_non_finite(lo, hi, name, ": expected finite times in [0, 1]")
        if lo < 0 or hi > 1:
            hint = (" (integer time steps 0..T of a discrete-time model? a continuous-time model takes t = step / T)"
                    if not t.is_floating_point() else "")
            raise ValueError(f"{name} must lie in [0, 1] (t = 0 data, t = 1 noise), got values in "
                             f"[{lo:.3g}, {hi:.3g}]{hint}")
    return t if t.is_floating_point() else t.float()


def timestep(t, T: int, *, lowest: int = 1, name: str = "t") -> int:
    """One time step as an int in [lowest, T]: refuses 2.7 (not truncated to 2), True, and tensors of many."""
    if isinstance(t, torch.Tensor):
        if t.numel() != 1 or t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"{name} must be one integer time step, got a {t.dtype} tensor of shape {tuple(t.shape)}")
        t = int(t.item())
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{name} must be an integer time step in [{lowest}, {T}], got {t!r}")
    t = int(t)
    if not lowest <= t <= T:
        raise ValueError(f"{name} must lie in [{lowest}, {T}], got {t}")
    return t


# -- numbers ------------------------------------------------------------------------------------

def _is_bool(value) -> bool:
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    return isinstance(value, bool) or numpy_bool or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def finite_number(value, name: str, *, low: float | None = None, high: float | None = None) -> float:
    """A real number (int, float, numpy scalar or one-element tensor) as a float, finite and, when
    given, in [low, high]. Bools and strings are refused: `strength=True` or "0.5" is a mistake."""
    if _is_bool(value):
        raise TypeError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        where = (f"lie in [{low:g}, {high:g}]" if low is not None and high is not None
                 else f"be >= {low:g}" if low is not None else f"be <= {high:g}")
        raise ValueError(f"{name} must {where}, got {value:g}")
    return value


def non_negative(value, name: str) -> float:
    """A finite number >= 0 (a weight, a clipping norm, a duration)."""
    return finite_number(value, name, low=0.0)


def positive_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An int (numpy ints too, never a bool or a float such as 3.0) in [minimum, maximum]."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


# -- prompts ------------------------------------------------------------------------------------

def prompts(value, name: str = "prompts") -> list[str]:
    """A prompt or prompts as a list of str: a str, or a list or tuple of str (not empty). Sets are
    refused: their order changes from run to run (PYTHONHASHSEED), and so would the images."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (set, frozenset)):
        raise TypeError(f"{name} must be a string or a list of strings, got a set: a set's order changes from run "
                        f"to run (PYTHONHASHSEED), so the images would not match the prompts; pass a list, "
                        f"e.g. sorted({name})")
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(value).__name__}")
    wrong = [p for p in value if not isinstance(p, str)]
    if wrong:
        raise TypeError(f"{name} must be a string or a list of strings, but it holds "
                        f"{type(wrong[0]).__name__} {wrong[0]!r}")
    if not value:
        raise ValueError(f"{name} is empty: give at least one prompt (\"\" is the empty prompt)")
    return list(value)


def negative_prompts(value, n: int) -> list[str] | None:
    """None, or one negative prompt per prompt: a str (used for all n) or a list of n strings."""
    if value is None:
        return None
    negatives = prompts(value, "negative_prompt")
    negatives = negatives * n if isinstance(value, str) else negatives
    if len(negatives) != n:
        raise ValueError(f"give one negative prompt, or one per prompt ({n}), got {len(negatives)}")
    return negatives


def state_dict(model: torch.nn.Module, state, source: str) -> dict:
    """Check that `state` can be loaded into `model` without changing anything first: a dict of tensors
    with exactly the model's names and shapes. On a mismatch the error names the tensors that are
    missing, unexpected or of another shape, and `source` (a file, or a model name) says where they came from."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} does not hold a state dict (a dict of tensors), got {type(state).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected),
                             ("of another shape (saved vs this model)", shapes)):
            if names:
                more = f" and {len(names) - 4} more" if len(names) > 4 else ""
                parts.append(f"{len(names)} {label}: {', '.join(names[:4])}{more}")
        raise ValueError(f"{source} was saved from a model of another configuration ({'; '.join(parts)}); "
                         f"build the model with the configuration it was saved from")
    return state
