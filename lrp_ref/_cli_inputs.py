"""The command line's input files: read them, check them, and say how they were read.

Nothing here alters an input silently.  Every file is checked before it is
used (empty, truncated, not the format its name says, not numbers, not
finite), its array is matched to the model's input shape in one of a few
stated layouts, and its values are checked against the model's raw range
(``input_low``/``input_high`` mapped back through ``input_scale`` and
``input_offset``).  Every refusal is a :class:`CliError` whose message is one
line that starts with the parameter and the file (``--input digits.npy: ...``)
and says what was expected.

Layouts accepted for a model whose input shape is ``S`` (e.g. ``(1, 28, 28)``):
``S`` or ``(N, *S)``; for one-channel images also ``S[1:]`` and
``(N, *S[1:])`` (e.g. ``(28, 28)`` and ``(N, 28, 28)``); and flat vectors
``(prod(S),)`` or ``(N, prod(S))`` (reshaped in C order).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from .graph import Graph

Array = NDArray[Any]

#: refuse input arrays larger than this (bytes as stored): a batch of 2 GiB is not a command-line job
MAX_INPUT_BYTES = 2**31

#: errors that h5py lets through from a damaged or unexpected file
_H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError)

_SIGNATURES = (
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (.h5)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"PK\x03\x04", "a zip archive (a NumPy .npz?)"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


class CliError(Exception):
    """A problem with the command's arguments or files, reported as one line."""


def _looks_like(path: Path) -> str:
    """' (it looks like ...)' from the file's first bytes, or '' if nothing is recognised."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return ""
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f" (it looks like {what})"
    try:
        head.decode("utf-8")
        return " (it looks like text)"
    except UnicodeDecodeError:
        return ""


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise CliError(f"{what}: no such file")
    if not path.is_file():
        raise CliError(f"{what}: not a file")
    if path.stat().st_size == 0:
        raise CliError(f"{what}: the file is empty (0 bytes)")


def _require_numbers(arr: Array, what: str) -> Array:
    if arr.dtype.kind not in "biuf":
        kind = "complex numbers" if arr.dtype.kind == "c" else f"dtype {arr.dtype}"
        raise CliError(f"{what}: holds {kind}; expected real numbers (bool, int, uint or float)")
    if arr.size == 0:
        raise CliError(f"{what}: holds an empty array of shape {arr.shape}")
    bad = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind == "f" else 0
    if bad:
        raise CliError(f"{what}: {bad} value(s) are NaN or infinite; expected finite numbers")
    return arr


# ----------------------------------------------------------------------------- file formats


def read_npy(path: Path, what: str) -> Array:
    """The array in a ``.npy`` file, after checking its header against the file size (no pickles)."""
    _require_file(path, what)
    with path.open("rb") as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            raise CliError(f"{what}: not a NumPy .npy file{_looks_like(path)}") from None
        try:
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:  # 2.0 and 3.0 differ only in the header's length field and text encoding
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, OSError, SyntaxError) as exc:
            raise CliError(f"{what}: the .npy header is damaged ({exc})") from None
        if dtype.hasobject:
            raise CliError(f"{what}: holds Python objects (it would need unpickling); expected an array of numbers")
        if dtype.kind not in "biuf":
            raise CliError(f"{what}: holds dtype {dtype}; expected real numbers (bool, int, uint or float)")
        declared = math.prod(shape) * dtype.itemsize
        if declared > MAX_INPUT_BYTES:
            raise CliError(f"{what}: declares an array {shape} of {declared} bytes; the limit is {MAX_INPUT_BYTES}")
        present = path.stat().st_size - f.tell()
        if present < declared:
            raise CliError(f"{what}: truncated: the header declares {shape} {dtype} ({declared} bytes of data), "
                           f"the file holds {present}")
        f.seek(0)
        try:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError) as exc:  # pragma: no cover - the checks above come first
            raise CliError(f"{what}: could not read the array ({exc})") from None
    return _require_numbers(np.asarray(arr), what)


def _open_h5(path: Path, what: str, expected: str) -> h5py.File:
    _require_file(path, what)
    if not h5py.is_hdf5(str(path)):
        raise CliError(f"{what}: not an HDF5 file{_looks_like(path)}; expected {expected}")
    try:
        return h5py.File(path, "r")
    except _H5_ERRORS as exc:
        raise CliError(f"{what}: HDF5 could not open it ({exc})") from None


def _dataset(f: h5py.File, name: str, what: str) -> Array:
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise CliError(f"{what}: '{name}' is a group; expected a dataset")
    if ds.dtype.kind not in "biuf":
        raise CliError(f"{what}: dataset '{name}' holds dtype {ds.dtype}; expected real numbers")
    if ds.size * ds.dtype.itemsize > MAX_INPUT_BYTES:
        raise CliError(f"{what}: dataset '{name}' {ds.shape} is larger than {MAX_INPUT_BYTES} bytes")
    return _require_numbers(np.asarray(ds[()]), f"{what}: dataset '{name}'")


def read_h5_input(path: Path, what: str) -> Array:
    """The one dataset (or the dataset ``x``) at the root of an HDF5 file."""
    f = _open_h5(path, what, "an HDF5 file with one dataset (or one named 'x')")
    try:
        with f:
            if f.attrs.get("format") == "lrp_ref":
                raise CliError(f"{what}: this is an lrp_ref model file, not an input (give it as --model)")
            names = sorted(k for k in f if isinstance(f.get(k), h5py.Dataset))
            if "images" in names and "labels" in names:
                raise CliError(f"{what}: this is a samples file (images, labels): give --samples {path} "
                               "with --input sample:K, sample:K,L,... or sample:all")
            if "x" not in names and len(names) != 1:
                raise CliError(f"{what}: expected one dataset at the root (or one named 'x'); found {names or 'none'}")
            return _dataset(f, "x" if "x" in names else names[0], what)
    except _H5_ERRORS as exc:
        raise CliError(f"{what}: HDF5 could not read it ({type(exc).__name__}: {exc})") from None


_GREY_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def read_png(path: Path, what: str, channels: int | None, grey: bool) -> tuple[Array, str]:
    """Pixels of a PNG: (H, W) for a grey image, (3, H, W) for a colour one; and how they were read.

    A colour image for a one-channel model needs ``grey=True`` (the ``--grey``
    flag), which converts it with Pillow's ITU-R 601-2 luma.  Transparent
    pixels are refused: the colour under them means nothing.
    """
    _require_file(path, what)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise CliError(f"{what}: reading PNG needs the 'viz' extra: pip install 'lrp_ref[viz]'") from None
    try:
        with Image.open(path) as img:
            img.load()
            if img.format != "PNG":
                raise CliError(f"{what}: holds a {img.format} image, not PNG; convert it to PNG or .npy")
            if getattr(img, "n_frames", 1) > 1:
                raise CliError(f"{what}: an animated PNG of {img.n_frames} frames; expected one image")
            mode = img.mode
            has_alpha = "A" in img.getbands() or "transparency" in img.info
            if has_alpha:
                alpha = np.asarray(img.convert("RGBA").getchannel("A"))
                if np.any(alpha < 255):
                    raise CliError(f"{what}: {int(np.count_nonzero(alpha < 255))} pixel(s) are transparent, and the "
                                   "colour under them means nothing; flatten the image onto a background first")
            is_grey = mode in _GREY_MODES or mode in ("1", "LA")
            if channels == 3:
                if is_grey:
                    raise CliError(f"{what}: a grey PNG (mode {mode}); the model takes 3 channels (RGB)")
                return np.asarray(img.convert("RGB")).transpose(2, 0, 1), f"RGB PNG (mode {mode})"
            if channels not in (None, 1):
                raise CliError(f"{what}: a PNG gives 1 or 3 channels; the model takes {channels}")
            if is_grey:
                if mode in ("1", "LA"):  # 1-bit: black 0, white 255, as PNG defines it; LA: opaque, alpha dropped
                    return np.asarray(img.convert("L")), f"grey PNG (mode {mode})"
                return np.asarray(img), f"grey PNG (mode {mode})"
            rgb = np.asarray(img.convert("RGB"))
            equal = bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))
            if not grey:
                hint = " (its R, G and B are equal everywhere, so --grey loses nothing)" if equal else ""
                raise CliError(f"{what}: a colour PNG (mode {mode}) for a one-channel model; give --grey to convert "
                               f"it to grey (L = 0.299 R + 0.587 G + 0.114 B){hint}, or convert it yourself")
            return np.asarray(img.convert("L")), f"colour PNG (mode {mode}) converted to grey by --grey"
    except CliError:
        raise
    except UnidentifiedImageError:
        raise CliError(f"{what}: not a PNG image{_looks_like(path) or ' (Pillow cannot identify it)'}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CliError(f"{what}: a damaged or unreadable PNG image ({exc})") from None


def load_samples(path: Path, hint: str = "") -> tuple[Array, Array]:
    """A samples file: raw images (N, ...) and integer labels (N,); ``hint`` is added to 'no such file'."""
    what = f"--samples {path}"
    if not path.exists():
        raise CliError(f"{what}: no such file{hint}")
    f = _open_h5(path, what, "a samples file with datasets 'images' and 'labels'")
    try:
        with f:
            if f.attrs.get("format") == "lrp_ref":
                raise CliError(f"{what}: this is an lrp_ref model file, not a samples file")
            if "images" not in f or "labels" not in f:
                raise CliError(f"{what}: not a samples file: expected datasets 'images' and 'labels'; "
                               f"found {sorted(f)}")
            images, labels = _dataset(f, "images", what), _dataset(f, "labels", what)
    except _H5_ERRORS as exc:
        raise CliError(f"{what}: HDF5 could not read it ({type(exc).__name__}: {exc})") from None
    if images.ndim < 2:
        raise CliError(f"{what}: 'images' has shape {images.shape}; expected (N, ...) with one image per row")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise CliError(f"{what}: 'labels' must be {len(images)} integers, one per image; "
                       f"found {labels.dtype} of shape {labels.shape}")
    return images, labels


# ----------------------------------------------------------------------------- shapes


def _layouts(shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    """The per-sample layouts a file may use for a model input of ``shape``."""
    forms = [(shape, "")]
    if len(shape) == 3 and shape[0] == 1:
        forms.append((shape[1:], "one-channel images"))
    if len(shape) > 1:
        forms.append(((math.prod(shape),), "flat vectors"))
    return forms


def fit_layout(v: Array, model: Graph, what: str) -> tuple[Array, bool, str]:
    """``v`` as a batch (N, *input_shape); whether the file held a batch axis; and how it was read."""
    declared = model.metadata.get("input_shape")
    if declared is None:
        return _fit_undeclared(v, model, what)
    shape = tuple(int(n) for n in declared)
    for form, name in _layouts(shape):
        if v.shape == form:
            how = f"one sample of {form} ({name}, reshaped to {shape})" if name else f"one sample of {shape}"
            return v.reshape(1, *shape), False, how
        if v.ndim == len(form) + 1 and v.shape[1:] == form:
            n = v.shape[0]
            how = f"{n} sample(s) of {form}" + (f" ({name}, reshaped to {(n, *shape)})" if name else "")
            return v.reshape(n, *shape), True, how
    accepted = ", ".join(f"{f} or (N, {', '.join(map(str, f))})" for f, _ in _layouts(shape))
    raise CliError(f"{what}: has shape {v.shape}; the model expects {shape} (or a batch of it); "
                   f"accepted layouts: {accepted}")


def _fit_undeclared(v: Array, model: Graph, what: str) -> tuple[Array, bool, str]:
    from .errors import ShapeError

    tries = [(v, True, f"{v.shape[0]} sample(s) of {v.shape[1:]}")] if v.ndim >= 2 else []
    tries.append((v[None], False, f"one sample of {v.shape}"))
    for x, batched, how in tries:
        try:
            model.shapes(x.shape[1:])
        except ShapeError:
            continue
        return x, batched, how + " (the model declares no input_shape)"
    raise CliError(f"{what}: has shape {v.shape}, which the model accepts neither as one sample nor as a batch, "
                   "and the model file declares no input_shape; save the model with "
                   "save(model, path, metadata={'input_shape': ...})")


# ----------------------------------------------------------------------------- values


def _per_channel(value: Any) -> Array:
    arr = np.asarray(value, dtype=np.float64)
    return arr[:, None, None] if arr.ndim == 1 else arr


def preprocess(raw: Array, model: Graph) -> Array:
    """Model input from raw values: ``raw * input_scale + input_offset`` (per channel if arrays)."""
    meta = model.metadata
    scale = _per_channel(meta.get("input_scale", 1.0))
    offset = _per_channel(meta.get("input_offset", 0.0))
    return raw.astype(np.float64) * scale + offset


def bounds(model: Graph) -> tuple[Array, Array] | None:
    """The model-input bounds (input_low, input_high), shaped to broadcast over (N, C, H, W), if declared."""
    meta = model.metadata
    if "input_low" not in meta or "input_high" not in meta:
        return None
    return _per_channel(meta["input_low"]), _per_channel(meta["input_high"])


def raw_range(model: Graph) -> tuple[Array, Array] | None:
    """The raw values that preprocessing maps onto [input_low, input_high] (per channel if arrays)."""
    b = bounds(model)
    if b is None:
        return None
    scale = _per_channel(model.metadata.get("input_scale", 1.0))
    offset = _per_channel(model.metadata.get("input_offset", 0.0))
    a, c = (b[0] - offset) / scale, (b[1] - offset) / scale
    return np.minimum(a, c), np.maximum(a, c)


def _show(low: Array, high: Array) -> str:
    lo, hi = np.ravel(low), np.ravel(high)
    if np.all(lo == lo[0]) and np.all(hi == hi[0]):
        return f"{lo[0]:.6g}..{hi[0]:.6g}"
    return "per channel " + ", ".join(f"{a:.6g}..{b:.6g}" for a, b in zip(lo, hi))


def _found(v: Array) -> str:
    return f"found {float(v.min()):.6g}..{float(v.max()):.6g}"


def _require_within(v: Array, low: Any, high: Any, what: str, where: str, hint: str, shown: Array) -> None:
    """Refuse values of ``v`` outside [low, high]; the message reports the range of ``shown`` (the file's values)."""
    outside = (v < low) | (v > high)
    if np.any(outside):
        raise CliError(f"{what}: {int(np.count_nonzero(outside))} value(s) lie outside {where} "
                       f"({_found(shown)}); {hint}")


@dataclass(frozen=True)
class Interpretation:
    """How values are turned into model inputs: ``--preprocessed``, ``--input-range``, or raw (default)."""

    preprocessed: bool = False
    input_range: tuple[float, float] | None = None


def to_model_input(v: Array, model: Graph, what: str, how: Interpretation) -> tuple[Array, str]:
    """Model inputs from the values ``v`` (N, C, ...) read from a file; refuses values outside the valid range."""
    box = bounds(model)
    raw = raw_range(model)
    if how.preprocessed:
        x = v.astype(np.float64)
        if box is not None:
            _require_within(x, box[0], box[1], what, f"the model input range {_show(*box)} (input_low..input_high)",
                            "--preprocessed takes model inputs; drop it if the file holds raw values", v)
        return x, "model inputs as they are (--preprocessed)"
    if how.input_range is not None:
        low, high = how.input_range
        if box is None or raw is None:
            raise CliError(f"--input-range {low:g},{high:g}: the model declares no input range (input_low, "
                           "input_high) to map it onto; give --preprocessed if the file holds model inputs")
        _require_within(v, np.float64(low), np.float64(high), what, f"--input-range {low:g},{high:g}",
                        "give the range the data really spans", v)
        if np.allclose([low, high], [np.min(raw[0]), np.max(raw[1])], rtol=1e-12, atol=0) \
                and np.all(raw[0] == raw[0].flat[0]) and np.all(raw[1] == raw[1].flat[0]):
            return preprocess(v, model), f"raw values {_show(*raw)} (--input-range is the model's raw range)"
        t = (v.astype(np.float64) - low) / (high - low)  # 0 at LOW, 1 at HIGH, exactly
        x = t * box[1] + (1 - t) * box[0]
        return x, f"values {low:g}..{high:g} mapped linearly onto the model input range {_show(*box)}"
    x = preprocess(v, model)
    if box is None or raw is None:
        return x, "raw values (the model declares no input range, so they are not checked)"
    if np.all(raw[0] <= 0) and np.all(raw[1] >= 2) and v.min() >= 0 and v.max() <= 1 and v.max() > 0:
        raise CliError(f"{what}: all values lie in [0, 1] ({_found(v)}), which looks like data already scaled, but "
                       f"the model takes raw values {_show(*raw)}; give --input-range 0,1 if the data is scaled to "
                       f"[0, 1], or --input-range {_show(*raw).replace('..', ',')} if these are raw values")
    _require_within(x, box[0], box[1], what, f"the model's raw range {_show(*raw)}",
                    "give --input-range LOW,HIGH for data in another range, or --preprocessed for model inputs", v)
    return x, f"raw values, range {_show(*raw)}"


def parse_range(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` for ``--input-range`` (argparse type)."""
    import argparse

    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with finite LOW < HIGH, e.g. 0,1 or 0,255; got {text!r}")
    return low, high


# ----------------------------------------------------------------------------- --input


@dataclass(frozen=True)
class Inputs:
    """What ``--input`` gave: model inputs (N, ...), labels if known, whether it was a batch, and a description."""

    x: Array
    labels: Array | None
    batched: bool
    description: str
    #: where each sample came from, when that is not its position (sample:K,L,...)
    sources: tuple[str, ...] | None = None

    def source(self, i: int) -> str:
        """' (sample:K)' for sample ``i`` of a list of shipped samples, else ''."""
        return f" ({self.sources[i]})" if self.sources is not None else ""


def _sample_indices(spec: str, n: int, samples: Path) -> tuple[list[int], bool]:
    text = spec.split(":", 1)[1].strip()
    if text == "all":
        return list(range(n)), True
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        raise CliError(f"--input {spec!r}: expected sample:K, sample:K,L,... or sample:all, with integers K") from None
    bad = [k for k in ks if not 0 <= k < n]
    if bad:
        raise CliError(f"--input {spec!r}: {samples.name} holds samples 0..{n - 1}; no sample {bad[0]}")
    return ks, len(ks) > 1


def read_input(spec: str, model: Graph, samples: Path, how: Interpretation, grey: bool,
               samples_hint: str = "") -> Inputs:
    """Model inputs for ``--input``: ``sample:K`` (also ``sample:K,L,...``, ``sample:all``) or a file."""
    labels: Array | None = None
    sources = None
    if spec.startswith("sample:"):
        images, all_labels = load_samples(samples, samples_hint)
        ks, batched = _sample_indices(spec, len(images), samples)
        if grey:
            raise CliError("--grey converts colour PNG files; the samples file holds one-channel images")
        what = f"--input {spec} (from {samples})"
        v, labels = images[ks], all_labels[ks]
        x, _, layout = fit_layout(v, model, what)
        layout = f"{len(ks)} sample(s) {ks}" if batched else f"sample {ks[0]}"
        sources = tuple(f"sample:{k}" for k in ks)
    else:
        path = Path(spec)
        what = f"--input {spec}"
        suffix = path.suffix.lower()
        if suffix not in (".npy", ".h5", ".hdf5", ".png"):
            if not path.exists():
                digits = re.fullmatch(r"(?:sample\D?)?(\d+)", spec.strip())
                hint = f" (did you mean sample:{digits.group(1)}?)" if digits else ""
                raise CliError(f"{what}: no such file{hint}; expected sample:K or a .npy, .h5 or .png file")
            found = "a folder" if path.is_dir() else f"a {suffix or 'suffix-less'} file{_looks_like(path)}"
            raise CliError(f"{what}: expected sample:K, .npy, .h5 or .png; got {found}")
        if grey and suffix != ".png":
            raise CliError(f"--grey converts colour PNG files; --input {spec} is a {suffix} file")
        if suffix == ".npy":
            v = read_npy(path, what)
        elif suffix == ".png":
            shape = model.metadata.get("input_shape")
            channels = int(shape[0]) if shape is not None and len(shape) == 3 else None
            v, kind = read_png(path, what, channels, grey)
            what = f"{what} ({kind})"
        else:
            v = read_h5_input(path, what)
        x, batched, layout = fit_layout(v, model, what)
    x, values = to_model_input(x, model, what, how)
    return Inputs(x, labels, batched, f"{what}: {layout}; {values}", sources)


# ----------------------------------------------------------------------------- --candidate


def read_candidate(path: Path, shapes: list[tuple[int, ...]], n: int) -> dict[int, Array]:
    """A candidate's relevances by layer boundary, each (N, ...) for the ``n`` samples of ``--input``.

    The file is a ``.npy`` of the input relevance, or an HDF5 file with a dataset
    ``relevance`` (input) or a group ``relevance`` of datasets named by boundary
    (``000`` = input).  ``shapes`` are one sample's shapes at every boundary; a
    relevance may omit the batch axis when ``n == 1``.
    """
    what = f"--candidate {path}"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        found = {0: read_npy(path, what)}
    elif suffix in (".h5", ".hdf5"):
        found = _read_candidate_h5(path, what)
    else:
        if not path.exists():
            raise CliError(f"{what}: no such file")
        raise CliError(f"{what}: expected a .npy file (input relevance) or an .h5 file with 'relevance'")
    last = len(shapes) - 1
    out = {}
    for k, r in found.items():
        if not 0 <= k <= last:
            raise CliError(f"{what}: boundary {k:03d} does not exist; the model has boundaries 000..{last:03d} "
                           f"(000 = input, {last:03d} = start relevance)")
        if r.shape == (n, *shapes[k]):
            out[k] = r
        elif n == 1 and r.shape == shapes[k]:
            out[k] = r[None]
        else:
            one = f" (or {shapes[k]} without the batch axis)" if n == 1 else ""
            raise CliError(f"{what}: the relevance at boundary {k:03d} has shape {r.shape}; expected "
                           f"{(n, *shapes[k])} for the {n} sample(s) of --input{one}")
    return out


def _read_candidate_h5(path: Path, what: str) -> dict[int, Array]:
    f = _open_h5(path, what, "an HDF5 file with a dataset or group 'relevance'")
    try:
        with f:
            if "relevance" not in f:
                raise CliError(f"{what}: expected a dataset or group named 'relevance'; found {sorted(f)}")
            item = f["relevance"]
            if isinstance(item, h5py.Dataset):
                return {0: _dataset(f, "relevance", what)}
            names = sorted(item)
            if not names:
                raise CliError(f"{what}: the group 'relevance' is empty; expected datasets 000, 001, ...")
            bad = [name for name in names if not name.isdigit()]
            if bad:
                raise CliError(f"{what}: the datasets in 'relevance' must be named by boundary (000, 001, ...); "
                               f"found {bad[0]!r}")
            if len({int(name) for name in names}) != len(names):
                raise CliError(f"{what}: two datasets in 'relevance' name the same boundary: {names}")
            return {int(name): _dataset(f, f"relevance/{name}", what) for name in names}
    except _H5_ERRORS as exc:
        raise CliError(f"{what}: HDF5 could not read it ({type(exc).__name__}: {exc})") from None
