"""Saving and loading models: the lrp_ref HDF5 format, schema 1.

``weights/README.md`` is the full specification (HDF5 types, an example
listing).  In short, a model file is an HDF5 file holding::

    /                  attributes: format = "lrp_ref", schema_version = 1,
                       dtype = "float64" | "float32", then the model metadata
    /layers/000, ...   one group per layer, in order: attributes ``type``,
                       ``index`` and the hyper-parameters; datasets for the
                       parameters, in the model dtype and PyTorch's layout

=========  ==========================================  ============================================
type       attributes (int64; pairs have shape (2,))   datasets
=========  ==========================================  ============================================
Dense      --                                          weight (out, in); bias (out,) if present
Conv2d     kernel_size, stride, padding, dilation,     weight (out, in/groups, kh, kw);
           groups (scalar)                             bias (out,) if present
MaxPool2d  kernel_size, stride, padding                --
AvgPool2d  kernel_size, stride                         window_weight (kh, kw), always written
ReLU       --                                          --
Flatten    --                                          --
=========  ==========================================  ============================================

Layer groups are named by position, zero-padded to ``max(3, len(str(n - 1)))``
digits so that HDF5's alphabetical listing keeps their order.

``Sequential.metadata`` becomes root attributes.  Known keys are checked:
``input_shape`` (one sample's shape), ``class_names``, ``input_scale`` and
``input_offset`` (model input = raw * input_scale + input_offset), ``input_low``
and ``input_high`` (bounds of the model input, for zB), each of these four a
number or a per-channel vector; and the provenance ``dataset``,
``dataset_license``, ``training_script`` (str), ``seed`` (int) and
``test_accuracy`` (a fraction in [0, 1]).  Any other key may hold a str, an int,
a finite float or a non-empty 1-D numeric array; nothing else is stored (and
nothing is ever pickled).

:func:`load` trusts nothing: it checks the layout, every type and shape, and
the size of every dataset from the HDF5 metadata *before* reading any data,
then that the parameters are finite and that the metadata fits the layers.
Every refusal is a :class:`~lrp_ref.errors.ModelFormatError` saying what was
expected and what was found.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from .errors import LrpRefError, ModelFormatError, ShapeError
from .graph import Sequential
from .layers import AvgPool2d, Conv2d, Dense, Flatten, Layer, MaxPool2d, ReLU

__all__ = ["FORMAT", "MAX_BYTES", "MAX_ELEMENTS", "SCHEMA_VERSION", "load", "read_model", "save", "write_model"]

#: Value of the root attribute ``format``.
FORMAT = "lrp_ref"
#: The schema this version writes, and the newest it reads.
SCHEMA_VERSION = 1
#: Default cap of :func:`load` on the elements of any one dataset or attribute.
MAX_ELEMENTS = 2**28
#: Default cap of :func:`load` on the bytes of all parameter datasets together.
MAX_BYTES = 2**30

Array = np.ndarray[Any, Any]
PathLike = str | os.PathLike[str]
_STR = h5py.string_dtype("utf-8")
_RESERVED = ("format", "schema_version", "dtype")
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_CHANNEL_KEYS = ("input_scale", "input_offset", "input_low", "input_high")


class _Spec(NamedTuple):
    make: Callable[..., Layer]
    pairs: tuple[str, ...] = ()  # int64 (2,) attributes
    ints: tuple[str, ...] = ()  # int64 scalar attributes
    required: tuple[str, ...] = ()  # datasets
    optional: tuple[str, ...] = ()


_LAYERS: dict[str, _Spec] = {
    "Dense": _Spec(Dense, required=("weight",), optional=("bias",)),
    "Conv2d": _Spec(Conv2d, ("kernel_size", "stride", "padding", "dilation"), ("groups",), ("weight",), ("bias",)),
    "MaxPool2d": _Spec(MaxPool2d, ("kernel_size", "stride", "padding")),
    "AvgPool2d": _Spec(AvgPool2d, ("kernel_size", "stride"), required=("window_weight",)),
    "ReLU": _Spec(ReLU),
    "Flatten": _Spec(Flatten),
}


# ----------------------------------------------------------------------------- values


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _text(value: Any, what: str) -> str:
    try:  # bytes: fixed-length strings, as other HDF5 writers may store them
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        if isinstance(text, str) and "\0" not in text:  # HDF5 strings end at the first NUL
            text.encode("utf-8")  # refuses lone surrogates
            return str(text)
    except UnicodeError:
        pass
    raise ModelFormatError(f"{what} must be a string (UTF-8, no NUL character); got {_kind(value)}")


def _integer(value: Any, what: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -(2**63) <= int(value) < 2**63:
        return int(value)
    raise ModelFormatError(f"{what} must be an integer (int64); got {_kind(value)}")


def _real(value: Any, what: str) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if math.isfinite(float(value)):
            return float(value)
    raise ModelFormatError(f"{what} must be a finite number; got {_kind(value)}")


def _vector(value: Any, what: str, kinds: str = "iuf") -> Array:
    """A non-empty 1-D numeric array, as int64 (integers) or float64 (floats)."""
    try:
        arr = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    except ValueError:  # ragged lists
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in kinds:
        raise ModelFormatError(f"{what} must be a non-empty 1-D numeric array; got {_kind(value)}")
    target = np.dtype(np.float64 if arr.dtype.kind == "f" else np.int64)
    if not np.can_cast(arr.dtype, target) or not np.all(np.isfinite(arr)):
        raise ModelFormatError(f"{what} must hold finite values that fit {target}; got {_kind(value)}")
    return arr.astype(target)


def _pair(value: Any, what: str) -> tuple[int, int]:
    arr = np.asarray(value)
    if arr.shape != (2,) or arr.dtype.kind not in "iu":
        raise ModelFormatError(f"{what} must be two integers (shape (2,)); got {_kind(value)}")
    return int(arr[0]), int(arr[1])


def _shape(value: Any, what: str) -> tuple[int, ...]:
    arr = _vector(value, what, "iu")
    if arr.min() < 1:
        raise ModelFormatError(f"{what} must hold positive sizes; got {tuple(arr.tolist())}")
    return tuple(int(n) for n in arr)


def _names(value: Any, what: str) -> list[str]:
    ok = isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)
    if not ok or len(value) == 0:
        raise ModelFormatError(f"{what} must be a non-empty list of strings; got {_kind(value)}")
    return [_text(item, f"{what}[{i}]") for i, item in enumerate(value)]


def _per_channel(value: Any, what: str) -> float | Array:
    is_vector = isinstance(value, (list, tuple, np.ndarray))
    return _vector(value, what).astype(np.float64) if is_vector else _real(value, what)


def _fraction(value: Any, what: str) -> float:
    if not 0.0 <= (fraction := _real(value, what)) <= 1.0:
        raise ModelFormatError(f"{what} must be a fraction in [0, 1]; got {fraction}")
    return fraction


def _free(value: Any, what: str) -> str | int | float | Array:
    if isinstance(value, (str, bytes)):
        return _text(value, what)
    if isinstance(value, (list, tuple, np.ndarray)):
        return _vector(value, what)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return _integer(value, what)
    if isinstance(value, (float, np.floating)):
        return _real(value, what)
    raise ModelFormatError(f"{what} must be a str, an int, a float or a 1-D numeric array; got {_kind(value)}")


_KNOWN: dict[str, Callable[[Any, str], Any]] = {
    "input_shape": _shape,
    "class_names": _names,
    **dict.fromkeys(_CHANNEL_KEYS, _per_channel),
    **dict.fromkeys(("dataset", "dataset_license", "training_script"), _text),
    "seed": _integer,
    "test_accuracy": _fraction,
}


def _metadata(raw: Mapping[Any, Any], model: Sequential, where: str) -> dict[str, Any]:
    """Check and normalise metadata: the same rules for :func:`save` and :func:`load`."""
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or "/" in key or key in _RESERVED:
            raise ModelFormatError(f"{where}: metadata key {key!r} is not allowed; keys are non-empty strings "
                                   f"without '/', other than {', '.join(_RESERVED)}")
        _text(key, f"{where}: metadata key {key!r}")
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        check: Callable[[Any, str], Any] = _KNOWN.get(key, _free)
        meta[key] = check(value, f"{where}: metadata {key!r}")
    for a, b in (("input_scale", "input_offset"), ("input_low", "input_high")):
        if (a in meta) != (b in meta):
            only = a if a in meta else b
            raise ModelFormatError(f"{where}: metadata {a!r} and {b!r} go together; found only {only!r}")
    if np.any(np.asarray(meta.get("input_scale", 1.0)) == 0):
        raise ModelFormatError(f"{where}: metadata 'input_scale' must be non-zero; got {meta['input_scale']}")
    shape = meta.get("input_shape")
    lengths = {key: meta[key].size for key in _CHANNEL_KEYS if isinstance(meta.get(key), np.ndarray)}
    channels = shape[0] if shape else next(iter(lengths.values()), None)
    if any(n != channels for n in lengths.values()):
        raise ModelFormatError(f"{where}: per-channel metadata must have one value per channel ({channels}"
                               f"{' = input_shape[0]' if shape else ''}); got lengths {lengths}")
    if np.any(np.asarray(meta.get("input_low", 0.0)) > np.asarray(meta.get("input_high", 0.0))):
        raise ModelFormatError(f"{where}: metadata needs input_low <= input_high; got {meta['input_low']} and "
                               f"{meta['input_high']}")
    if shape is not None:
        try:
            out = model.shapes(shape)[-1]
        except ShapeError as exc:
            raise ModelFormatError(f"{where}: metadata input_shape {shape} does not fit the layers: {exc}") from None
        if "class_names" in meta and out != (len(meta["class_names"]),):
            raise ModelFormatError(f"{where}: {len(meta['class_names'])} class_names, but the output has shape {out}")
    return meta


# ----------------------------------------------------------------------------- save


def save(model: Sequential, path: PathLike) -> None:
    """Write ``model`` to ``path`` in the lrp_ref HDF5 format (schema 1).

    Parameters
    ----------
    model : Sequential
        Made of :class:`Dense`, :class:`Conv2d`, :class:`MaxPool2d`,
        :class:`AvgPool2d`, :class:`ReLU` and :class:`Flatten` layers (exactly
        these classes); ``model.metadata`` must follow the rules above and fit
        the layers.
    path : str or path-like
        The target; an existing file is replaced.  The data go to a temporary
        file beside it that is then renamed, so a failed save leaves no partial
        file and keeps any previous one.

    Raises
    ------
    ModelFormatError
        If a layer or a metadata entry cannot be stored (nothing is written).

    Notes
    -----
    ``load(path)`` gives back the parameters bit for bit in the same dtype,
    hence identical outputs, and the metadata in normal form: ``input_shape``
    a tuple, ``class_names`` a list of str, numbers ``int`` or ``float``,
    vectors int64 or float64 arrays.  Saving is deterministic: the same model
    gives the same bytes.
    """
    meta = _checked_for_writing(model, "save")
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such directory for the model file", str(target.parent))
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            _write(f, model, meta)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _checked_for_writing(model: Sequential, where: str) -> dict[str, Any]:
    if not isinstance(model, Sequential):
        raise TypeError(f"{where} expects an lrp_ref.Sequential; got {type(model).__name__}")
    meta = _metadata(model.metadata, model, where)
    for i, layer in enumerate(model.layers):
        if getattr(_LAYERS.get(type(layer).__name__), "make", None) is not type(layer):
            raise ModelFormatError(f"{where}: layer {i} is a {type(layer).__name__}; the format stores only "
                                   f"{', '.join(_LAYERS)}")
        if isinstance(layer, AvgPool2d) and layer.padding != (0, 0):  # not silently dropped: schema 1 has no field
            raise ModelFormatError(f"{where}: layer {i} ({layer.describe()}): the format does not store average "
                                   "pooling padding (nor count_include_pad)")
    return meta


def write_model(group: Any, model: Sequential) -> None:
    """Write ``model`` into an open, empty h5py group, in the same layout as a model file's root.

    Used to embed models in other files (the conformance vectors).
    """
    _write(group, model, _checked_for_writing(model, "write_model"))


def read_model(group: Any, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS) -> Sequential:
    """Read a model embedded by :func:`write_model` from an open h5py group, with every check of :func:`load`."""
    return _read(group, f"{group.file.filename}:{group.name}", max_bytes, max_elements)


def _write(f: Any, model: Sequential, meta: dict[str, Any]) -> None:
    f.attrs.create("format", FORMAT, dtype=_STR)
    f.attrs.create("schema_version", np.int64(SCHEMA_VERSION))
    f.attrs.create("dtype", model.dtype.name, dtype=_STR)
    for key, value in meta.items():
        if isinstance(value, str) or key == "class_names":
            f.attrs.create(key, value, dtype=_STR)
        else:  # int and input_shape as int64, float as float64, arrays as they are (int64 or float64)
            f.attrs.create(key, np.asarray(value, dtype=np.int64 if isinstance(value, (int, tuple)) else None))
    group = f.create_group("layers")
    width = max(3, len(str(len(model) - 1)))
    for i, layer in enumerate(model.layers):
        spec = _LAYERS[type(layer).__name__]
        g = group.create_group(f"{i:0{width}d}")
        g.attrs.create("type", type(layer).__name__, dtype=_STR)
        g.attrs.create("index", np.int64(i))
        for name in spec.pairs + spec.ints:
            g.attrs.create(name, np.asarray(getattr(layer, name), dtype=np.int64))
        for name in spec.required + spec.optional:
            if getattr(layer, name) is not None:
                g.create_dataset(name, data=getattr(layer, name), track_times=False)


# ----------------------------------------------------------------------------- load


def load(path: PathLike, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS) -> Sequential:
    """Read a model written by :func:`save`, or by any writer that follows ``weights/README.md``.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int, default 2**30
        Refuse files whose parameter datasets together declare more bytes.
    max_elements : int, default 2**28
        Refuse any dataset or attribute that declares more elements.

    Returns
    -------
    Sequential
        In the dtype named by the root attribute ``dtype``, with the metadata
        (in the normal form of :func:`save`) as ``model.metadata``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFormatError
        If the file is not HDF5 or not an lrp_ref model, was written with a
        newer schema, or anything in it is missing, unknown, of the wrong type
        or shape, too large (checked before any data is read) or non-finite,
        or if the metadata does not fit the layers.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "No such lrp_ref model file", str(p))
    if not p.is_file():
        raise ModelFormatError(f"{p}: not a regular file; expected an lrp_ref HDF5 model")
    if not h5py.is_hdf5(str(p)):
        raise ModelFormatError(f"{p}: not an HDF5 file (no HDF5 signature); expected an lrp_ref HDF5 model")
    try:
        with h5py.File(p, "r") as f:
            return _read(f, str(p), max_bytes, max_elements)
    except OSError as exc:
        raise ModelFormatError(f"{p}: HDF5 could not read the file: {exc}") from exc


def _read(f: Any, where: str, max_bytes: int, max_elements: int) -> Sequential:
    attrs = _attributes(f, where, max_elements)
    for name, wanted in (("format", f"{FORMAT!r}"), ("schema_version", "an int"), ("dtype", "'float32' or 'float64'")):
        if name not in attrs:
            raise ModelFormatError(f"{where}: no root attribute {name!r}; expected {wanted} (not an lrp_ref model?)")
    found = attrs.pop("format")
    if not isinstance(found, (str, bytes)) or _text(found, f"{where}: root attribute 'format'") != FORMAT:
        raise ModelFormatError(f"{where}: root attribute 'format' is {_kind(found)}; expected {FORMAT!r}")
    version = _integer(attrs.pop("schema_version"), f"{where}: root attribute 'schema_version'")
    if version > SCHEMA_VERSION:
        raise ModelFormatError(f"{where}: written by a newer lrp_ref: schema {version}, this version reads up to "
                               f"{SCHEMA_VERSION}")
    if version < 1:
        raise ModelFormatError(f"{where}: root attribute 'schema_version' must be >= 1; got {version}")
    dtype = _DTYPES.get(name := _text(attrs.pop("dtype"), f"{where}: root attribute 'dtype'"))
    if dtype is None:
        raise ModelFormatError(f"{where}: root attribute 'dtype' must be 'float32' or 'float64'; got {name!r}")
    layers = _child(f, "layers", h5py.Group, f"{where}: group 'layers'")
    _exact(set(f), ("layers",), (), f"{where}: root", "member")
    _exact(set(layers.attrs), (), (), f"{where}: group 'layers'", "attribute")
    names = sorted(layers)
    if not names:
        raise ModelFormatError(f"{where}: group 'layers' is empty; a model needs at least one layer")
    width = max(3, len(str(len(names) - 1)))
    expected_names = [f"{i:0{width}d}" for i in range(len(names))]
    if names != expected_names:
        missing = ", ".join(f"layers/{n}" for n in expected_names if n not in names) or "none"
        extra = ", ".join(f"layers/{n}" for n in names if n not in expected_names) or "none"
        raise ModelFormatError(f"{where}: layer groups must be named {expected_names[0]}..{expected_names[-1]} "
                               f"(zero-padded to {width} digits); missing: {missing}; unexpected: {extra}")
    plans = [_plan(layers, n, i, dtype, max_elements) for i, n in enumerate(names)]
    total = sum(math.prod(ds.shape) * ds.dtype.itemsize for _, _, _, datasets in plans for ds in datasets.values())
    if total > max_bytes:
        raise ModelFormatError(f"{where}: the parameters declare {total} bytes, more than max_bytes={max_bytes}; "
                               "pass a larger max_bytes to load() if you trust the file")
    model = Sequential([_build(*plan, dtype) for plan in plans])
    return Sequential(model.layers, _metadata(attrs, model, where))


def _attributes(obj: Any, where: str, max_elements: int) -> dict[str, Any]:
    """All attributes of ``obj``, each size-checked from its dataspace before it is read."""
    out = {}
    for name in obj.attrs:
        n = math.prod(obj.attrs.get_id(name).shape or ())
        if n > max_elements:
            raise ModelFormatError(f"{where}: attribute {name!r} declares {n} elements, more than {max_elements}")
        out[name] = obj.attrs[name]
    return out


def _child(parent: Any, name: str, kind: Any, what: str) -> Any:
    link = parent.get(name, getlink=True)
    if link is None:
        raise ModelFormatError(f"{what} is missing")
    if not isinstance(link, h5py.HardLink):  # soft and external links could point anywhere, even at other files
        raise ModelFormatError(f"{what} is a {type(link).__name__}; only objects stored in the file itself are allowed")
    if not isinstance(obj := parent[name], kind):
        raise ModelFormatError(f"{what} must be a {kind.__name__}; found a {type(obj).__name__}")
    return obj


def _exact(found: set[str], required: tuple[str, ...], optional: tuple[str, ...], where: str, noun: str) -> None:
    if missing := [n for n in required if n not in found]:
        raise ModelFormatError(f"{where}: missing {noun} {', '.join(map(repr, missing))}")
    if extra := sorted(found - set(required) - set(optional)):
        allowed = ", ".join(map(repr, required + optional)) or "none"
        raise ModelFormatError(f"{where}: unexpected {noun} {', '.join(map(repr, extra))}; allowed: {allowed}")


def _plan(layers: Any, name: str, index: int, dtype: np.dtype[Any], max_elements: int
          ) -> tuple[str, _Spec, dict[str, Any], dict[str, Any]]:
    """Check one layer group from HDF5 metadata alone; returns what :func:`_build` needs."""
    path = f"layers/{name}"
    g = _child(layers, name, h5py.Group, path)
    attrs = _attributes(g, path, max_elements)
    if "type" not in attrs:
        raise ModelFormatError(f"{path}: missing attribute 'type'; expected one of {', '.join(_LAYERS)}")
    if (kind := _text(attrs["type"], f"{path}: attribute 'type'")) not in _LAYERS:
        raise ModelFormatError(f"{path}: unknown layer type {kind!r}; expected one of {', '.join(_LAYERS)}")
    spec, where = _LAYERS[kind], f"{path} ({kind})"
    _exact(set(attrs), ("type", "index", *spec.pairs, *spec.ints), (), where, "attribute")
    if _integer(attrs["index"], f"{where}: attribute 'index'") != index:
        raise ModelFormatError(f"{where}: attribute 'index' is {attrs['index']}; expected {index} (its position)")
    hyper: dict[str, Any] = {k: _pair(attrs[k], f"{where}: attribute {k!r}") for k in spec.pairs}
    hyper.update({k: _integer(attrs[k], f"{where}: attribute {k!r}") for k in spec.ints})
    _exact(set(g), spec.required, spec.optional, where, "dataset")
    datasets = {k: _child(g, k, h5py.Dataset, f"{path}/{k}") for k in g}
    for k, ds in datasets.items():
        _check_dataset(ds, f"{path}/{k}", dtype, max_elements)
    _check_shapes(kind, hyper, {k: tuple(ds.shape) for k, ds in datasets.items()}, where)
    return where, spec, hyper, datasets


def _check_dataset(ds: Any, path: str, dtype: np.dtype[Any], max_elements: int) -> None:
    """Check a parameter dataset from its HDF5 metadata alone: nothing is read."""
    if ds.is_virtual or ds.external:
        raise ModelFormatError(f"{path}: virtual or external storage is not allowed; data must live in the file")
    if ds.shape is None:
        raise ModelFormatError(f"{path}: has no dataspace (an empty dataset); expected an array")
    if (n := math.prod(ds.shape)) > max_elements:
        raise ModelFormatError(f"{path}: declares shape {ds.shape} = {n} elements, more than "
                               f"max_elements={max_elements}")
    if ds.dtype.kind != "f" or ds.dtype.itemsize not in (4, 8):
        raise ModelFormatError(f"{path}: parameters must be float32 or float64; found dtype {ds.dtype}")
    if ds.dtype.newbyteorder("=") != dtype:  # either byte order is fine
        raise ModelFormatError(f"{path}: dtype {ds.dtype} differs from the model dtype {dtype} (root attribute "
                               "'dtype')")
    if n == 0:
        raise ModelFormatError(f"{path}: shape {ds.shape} has no elements")


def _check_shapes(kind: str, hyper: dict[str, Any], shapes: dict[str, tuple[int, ...]], where: str) -> None:
    w, b, k = shapes.get("weight"), shapes.get("bias"), hyper.get("kernel_size")
    if w is not None:
        ndim, layout = (2, "(out, in)") if kind == "Dense" else (4, "(out, in/groups, kh, kw)")
        if len(w) != ndim:
            raise ModelFormatError(f"{where}: weight must have {ndim} dimensions {layout}; found shape {w}")
        if b is not None and b != w[:1]:
            raise ModelFormatError(f"{where}: bias must have shape ({w[0]},) to match weight {w}; found {b}")
        if kind == "Conv2d" and w[2:] != k:
            raise ModelFormatError(f"{where}: weight shape {w} does not match attribute kernel_size {k}")
    if kind == "AvgPool2d" and shapes["window_weight"] != k:
        raise ModelFormatError(f"{where}: window_weight must have shape kernel_size {k}; found "
                               f"{shapes['window_weight']}")


def _build(where: str, spec: _Spec, hyper: dict[str, Any], datasets: dict[str, Any], dtype: np.dtype[Any]) -> Layer:
    """Read the checked datasets, check they are finite and construct the layer."""
    kwargs = dict(hyper)
    for k, ds in datasets.items():
        kwargs[k] = a = np.asarray(ds[()], dtype=dtype)
        if not np.all(np.isfinite(a)):
            nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            raise ModelFormatError(f"{ds.name.lstrip('/')}: parameters must be finite; found {nan} NaN and {inf} "
                                   f"inf value(s) among {a.size}")
    if spec.make is Conv2d:
        del kwargs["kernel_size"]  # implied by the weight, and checked against it
    try:
        return spec.make(**kwargs, dtype=dtype)
    except LrpRefError as exc:  # hyper-parameters the layer itself refuses, e.g. stride 0
        raise ModelFormatError(f"{where}: {exc}") from None
