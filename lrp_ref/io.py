"""Saving and loading models: the lrp_ref HDF5 format, schemas 1 and 2 (graphs and the later layers).

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

:func:`load` trusts nothing.  Before it reads any value it checks, from the
HDF5 metadata alone, the layout, every type, shape and name, and every size
against a limit: the number of layers (``max_layers``), the elements of any one
dataset or attribute (``max_elements``), the bytes of all parameters
(``max_bytes``), the bytes every dataset and attribute declares against the
size of the file itself, and the storage (data must live in the file, be fully
written, uncompressed, in at most 65,536 chunks).  Hyper-parameters are bounded
(:data:`MAX_HYPERPARAMETER`) and, with ``input_shape``, so is every activation
(:data:`MAX_SAMPLE_ELEMENTS`), so nothing later wraps or blows up.  Then it reads
the parameters, checks they are finite and that the metadata fits the layers.
The work is bounded by the limits, so is the time to refuse a hostile file.

Every refusal is a :class:`~lrp_ref.errors.ModelFormatError` naming the file
and saying what was expected and what was found; an error raised by h5py or
libhdf5 on a damaged file becomes one too, naming the object being read.  A
missing file is a :class:`FileNotFoundError`, a ``path`` that is not a path an
:class:`~lrp_ref.errors.IOArgumentError`.

A byte-corrupted file can still crash or hang libhdf5 itself (a segmentation
fault, an endless loop in its parser), which no check in Python can stop.
``load(path, untrusted=True)`` and :func:`check_file` (``lrp-ref check-file``)
therefore first read the file in a child process, under a wall-clock and a
memory limit (:mod:`lrp_ref._sandbox`), and report a crash, a timeout or a
memory blow-up there as a :class:`~lrp_ref.errors.ModelFormatError`.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from . import _sandbox
from ._checks import MAX_ELEMENTS as LAYER_MAX_ELEMENTS
from .errors import IOArgumentError, LrpRefError, ModelFormatError, ShapeError
from .graph import INPUT, Graph, Node, Sequential
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    MaxPool2d,
    ReLU,
)
from .merge import Add, Concat

__all__ = [
    "FORMAT",
    "MAX_BYTES",
    "MAX_ELEMENTS",
    "MAX_HYPERPARAMETER",
    "MAX_LAYERS",
    "MAX_SAMPLE_ELEMENTS",
    "SCHEMA_VERSION",
    "check_file",
    "load",
    "read_model",
    "save",
    "write_model",
]

#: Value of the root attribute ``format``.
FORMAT = "lrp_ref"
#: The schema this version writes, and the newest it reads.
SCHEMA_VERSION = 2
#: Default cap of :func:`load` on the elements of any one dataset or attribute.
MAX_ELEMENTS = 2**28
#: Default cap of :func:`load` on the bytes of all parameter datasets together.
MAX_BYTES = 2**30
#: Default cap of :func:`load` on the number of layers.
MAX_LAYERS = 1024
#: Largest kernel size, stride, padding, dilation or groups a file may hold.
MAX_HYPERPARAMETER = 2**16
#: Largest activation (elements of one sample at any layer boundary) that ``input_shape`` may imply: the
#: layers' own limit (:data:`lrp_ref.layers.MAX_ELEMENTS`), which they enforce on every output and padded input.
MAX_SAMPLE_ELEMENTS = LAYER_MAX_ELEMENTS

Array = np.ndarray[Any, Any]
PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]
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
    floats: tuple[str, ...] = ()  # float64 scalar attributes
    sides: tuple[str, ...] = ()  # int64 (2,) or, from schema 2, (4,) attributes: padding (top, bottom, left, right)
    extra: tuple[tuple[str, Any], ...] = ()  # optional int attributes (schema 2) and the value their absence means
    schema: int = 1  # the first schema that has this layer type


#: the order integer attributes are written in (schema 1 files keep their bytes)
_ORDER = ("kernel_size", "stride", "padding", "dilation", "groups", "output_size", "n_inputs")

_LAYERS: dict[str, _Spec] = {
    "Dense": _Spec(Dense, required=("weight",), optional=("bias",)),
    "Conv2d": _Spec(Conv2d, ("kernel_size", "stride", "dilation"), ("groups",), ("weight",), ("bias",),
                    sides=("padding",)),
    "MaxPool2d": _Spec(MaxPool2d, ("kernel_size", "stride"), sides=("padding",)),
    "AvgPool2d": _Spec(AvgPool2d, ("kernel_size", "stride"), required=("window_weight",),
                       extra=(("padding", (0, 0)), ("count_include_pad", 1))),
    "ReLU": _Spec(ReLU),
    "Flatten": _Spec(Flatten),
    # schema 2
    "BatchNorm1d": _Spec(BatchNorm1d, required=("gamma", "beta", "running_mean", "running_var"), floats=("eps",),
                         schema=2),
    "BatchNorm2d": _Spec(BatchNorm2d, required=("gamma", "beta", "running_mean", "running_var"), floats=("eps",),
                         schema=2),
    "AdaptiveAvgPool2d": _Spec(AdaptiveAvgPool2d, ("output_size",), schema=2),
    "GlobalAvgPool2d": _Spec(GlobalAvgPool2d, schema=2),
    "Add": _Spec(Add, ints=("n_inputs",), optional=("weight",), schema=2),
    "Concat": _Spec(Concat, ints=("n_inputs",), schema=2),
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
    shape = tuple(int(n) for n in arr)
    if (n := math.prod(shape)) > MAX_SAMPLE_ELEMENTS:
        raise ModelFormatError(f"{what} {shape} has {n} elements per sample, more than "
                               f"MAX_SAMPLE_ELEMENTS={MAX_SAMPLE_ELEMENTS}")
    return shape


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


def _metadata(raw: Mapping[Any, Any], model: Graph, where: str) -> dict[str, Any]:
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
        out = _boundaries(model, shape, where)
        if "class_names" in meta and out != (len(meta["class_names"]),):
            raise ModelFormatError(f"{where}: {len(meta['class_names'])} class_names, but the output has shape {out}")
    return meta


def _boundaries(model: Graph, input_shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The output shape for ``input_shape``; the layers refuse any activation beyond :data:`MAX_SAMPLE_ELEMENTS`.

    The layers compute their sizes in Python ints, one boundary at a time, so no shape arithmetic wraps int64.
    """
    try:
        return tuple(model.shapes(input_shape)[-1])
    except ShapeError as exc:
        raise ModelFormatError(f"{where}: metadata input_shape {input_shape} does not fit the layers: {exc}") from None


# ----------------------------------------------------------------------------- save


def save(model: Graph, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` in the lrp_ref HDF5 format (schema 1).

    Parameters
    ----------
    model : Sequential
        Made of :class:`Dense`, :class:`Conv2d`, :class:`MaxPool2d`,
        :class:`AvgPool2d`, :class:`ReLU` and :class:`Flatten` layers (exactly
        these classes), with hyper-parameters up to :data:`MAX_HYPERPARAMETER`.
    path : str, bytes or path-like
        The target; an existing file is replaced.  The data go to a temporary
        file beside it that is then renamed, so a failed save leaves no partial
        file and keeps any previous one.
    metadata : mapping, optional
        Entries stored on top of ``model.metadata`` (a key given here replaces
        the model's), e.g. ``{"input_shape": (1, 28, 28)}``.  The merged
        metadata must follow the rules above and fit the layers.

    Raises
    ------
    ModelFormatError
        If a layer or a metadata entry cannot be stored (nothing is written).
    IOArgumentError
        If ``path`` is not a str, bytes or path-like.

    Notes
    -----
    ``load(path)`` gives back the parameters bit for bit in the same dtype,
    hence identical outputs, and the metadata in normal form: ``input_shape``
    a tuple, ``class_names`` a list of str, numbers ``int`` or ``float``,
    vectors int64 or float64 arrays.  Saving is deterministic: the same model
    gives the same bytes.  Store ``input_shape`` whenever you can: without it
    nothing can check the layers against an input before one is given, and
    the command line cannot tell how to shape an input file.
    """
    target = _path(path, "save")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ModelFormatError(f"save: metadata must be a mapping (e.g. a dict); got {_kind(metadata)}")
        if isinstance(model, Sequential):
            model = Sequential(model.layers, {**model.metadata, **metadata})
        elif isinstance(model, Graph):
            model = Graph(model.nodes, {**model.metadata, **metadata})
    meta = _checked_for_writing(model, "save")
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such directory for the model file", str(target.parent))
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            _write(f, model, meta)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _checked_for_writing(model: Graph, where: str) -> dict[str, Any]:
    if not isinstance(model, Graph):
        raise TypeError(f"{where} expects an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    meta = _metadata(model.metadata, model, where)
    for i, layer in enumerate(model.layers):
        spec = _LAYERS.get(type(layer).__name__)
        if spec is None or spec.make is not type(layer):
            raise ModelFormatError(f"{where}: layer {i} is a {type(layer).__name__}; the format stores only "
                                   f"{', '.join(_LAYERS)}")
        for name in spec.pairs + spec.ints + spec.sides + tuple(k for k, _ in spec.extra):
            _bounded(tuple(np.atleast_1d(getattr(layer, name)).tolist()),
                     f"{where}: layer {i} ({type(layer).__name__}) {name}")
    return meta


def _schema_needed(model: Graph) -> int:
    """1 where schema 1 can hold ``model`` (so that such files stay as they were), else 2."""
    if not isinstance(model, Sequential):
        return 2
    for layer in model.layers:
        spec = _LAYERS[type(layer).__name__]
        if spec.schema > 1 or any(len(getattr(layer, k)) == 4 for k in spec.sides):
            return 2
        if any(_extra_value(layer, k) != default for k, default in spec.extra):
            return 2
    return 1


def _extra_value(layer: Layer, name: str) -> Any:
    value = getattr(layer, name)
    return int(value) if isinstance(value, (bool, np.bool_)) else tuple(value) if isinstance(value, tuple) else value


def write_model(group: Any, model: Graph) -> None:
    """Write ``model`` into an open, empty h5py group, in the same layout as a model file's root.

    Used to embed models in other files (the conformance vectors).
    """
    _write(group, model, _checked_for_writing(model, "write_model"))


def read_model(group: Any, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS,
               max_layers: int = MAX_LAYERS) -> Graph:
    """Read a model embedded by :func:`write_model` from an open h5py group, with every check of :func:`load`."""
    walk = _Walk(f"{group.file.filename}:{group.name}", _limits(max_bytes, max_elements, max_layers, "read_model"))
    with walk.guard():
        walk.file_size = int(group.file.id.get_filesize())
        return _read(group, walk)


def _write(f: Any, model: Graph, meta: dict[str, Any]) -> None:
    schema = _schema_needed(model)
    f.attrs.create("format", FORMAT, dtype=_STR)
    f.attrs.create("schema_version", np.int64(schema))
    f.attrs.create("dtype", model.dtype.name, dtype=_STR)
    for key, value in meta.items():
        if isinstance(value, str) or key == "class_names":
            f.attrs.create(key, value, dtype=_STR)
        else:  # int and input_shape as int64, float as float64, arrays as they are (int64 or float64)
            f.attrs.create(key, np.asarray(value, dtype=np.int64 if isinstance(value, (int, tuple)) else None))
    group = f.create_group("layers")
    width = max(3, len(str(len(model) - 1)))
    for i, node in enumerate(model.nodes):
        layer = node.layer
        spec = _LAYERS[type(layer).__name__]
        g = group.create_group(f"{i:0{width}d}")
        g.attrs.create("type", type(layer).__name__, dtype=_STR)
        g.attrs.create("index", np.int64(i))
        if schema >= 2:
            g.attrs.create("name", node.name, dtype=_STR)
            g.attrs.create("inputs", list(node.inputs), dtype=_STR)
        for name in sorted(spec.pairs + spec.ints + spec.sides, key=_ORDER.index):  # schema 1's order, as ever
            g.attrs.create(name, np.asarray(getattr(layer, name), dtype=np.int64))
        for name in spec.floats:
            g.attrs.create(name, np.float64(getattr(layer, name)))
        for name, default in spec.extra:
            if (value := _extra_value(layer, name)) != default:
                g.attrs.create(name, np.asarray(value, dtype=np.int64))
        for name in spec.required + spec.optional:
            if getattr(layer, name) is not None:
                g.create_dataset(name, data=getattr(layer, name), track_times=False)


# ----------------------------------------------------------------------------- arguments and limits


class _Limits(NamedTuple):
    max_bytes: int
    max_elements: int
    max_layers: int


def _limits(max_bytes: Any, max_elements: Any, max_layers: Any, where: str) -> _Limits:
    values = {"max_bytes": max_bytes, "max_elements": max_elements, "max_layers": max_layers}
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise IOArgumentError(f"{where}: {name} must be a positive int; got {_kind(value)}")
    return _Limits(int(max_bytes), int(max_elements), int(max_layers))


def _path(path: Any, where: str) -> Path:
    """``path`` as a Path; str, bytes (decoded as :func:`os.fsdecode` does) and path-like objects are taken."""
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            text = os.fsdecode(path)
        except TypeError:  # a path-like whose __fspath__ returns neither str nor bytes
            text = None
        if text and "\0" not in text:
            return Path(text)
    raise IOArgumentError(f"{where}: path must be a non-empty str, bytes or os.PathLike without NUL characters; "
                          f"got {_kind(path)}")


def _bounded(value: Any, what: str) -> None:
    """Refuse hyper-parameters whose size could overflow the shape arithmetic of later steps."""
    values = value if isinstance(value, tuple) else (value,)
    if any(abs(int(v)) > MAX_HYPERPARAMETER for v in values):
        raise ModelFormatError(f"{what} is {value}; each value must be at most MAX_HYPERPARAMETER="
                               f"{MAX_HYPERPARAMETER} in size")


# ----------------------------------------------------------------------------- the guarded walk

#: What h5py and libhdf5 raise on a damaged file (h5py maps HDF5 error stacks onto these), plus
#: what numpy and the Python runtime raise on absurd values.  Programming errors (AttributeError,
#: NameError, AssertionError) are deliberately not in the list.
_READ_ERRORS = (OSError, LookupError, RuntimeError, TypeError, ValueError, ArithmeticError, MemoryError, SystemError)

#: HDF5 type classes of attributes that are read at all: numbers and strings (an enum is how h5py
#: stores a bool).  Compound, variable-length sequence, reference, opaque, array, bitfield and time
#: types are refused from their type alone.
_ATTRIBUTE_CLASSES = {h5py.h5t.INTEGER: "integer", h5py.h5t.FLOAT: "float", h5py.h5t.STRING: "string",
                      h5py.h5t.ENUM: "enum"}
_CLASS_NAMES = {h5py.h5t.COMPOUND: "compound", h5py.h5t.VLEN: "variable-length sequence",
                h5py.h5t.REFERENCE: "reference", h5py.h5t.OPAQUE: "opaque", h5py.h5t.ARRAY: "array",
                h5py.h5t.BITFIELD: "bitfield", h5py.h5t.TIME: "time", **_ATTRIBUTE_CLASSES}
#: Filters that keep the size of the data (so a chunk cannot expand into a memory bomb) and need no plugin.
_FILTERS = {h5py.h5z.FILTER_SHUFFLE: "shuffle", h5py.h5z.FILTER_FLETCHER32: "fletcher32"}
#: Most chunks a chunked dataset may span (bounds the time of reading it).
_MAX_CHUNKS = 2**16
#: Most attributes on the root (the metadata); layer groups have a handful by the format.
_MAX_ROOT_ATTRIBUTES = 1024
#: Most attributes on a layer group: type, index and the hyper-parameters of the richest type.
_MAX_LAYER_ATTRIBUTES = 4 + max(len(spec.pairs) + len(spec.ints) + len(spec.floats) + len(spec.sides)
                                + len(spec.extra) for spec in _LAYERS.values())  # + type, index, name, inputs
#: Most member names listed in a message.
_LISTED = 8


class _Walk:
    """One read of a model: its name (for messages), the limits, the file size, and the object being read.

    :meth:`guard` is the one place where an exception from h5py, libhdf5 or numpy becomes a
    :class:`ModelFormatError`; it names the file and ``at``, which the walk keeps current.
    """

    def __init__(self, name: str, limits: _Limits) -> None:
        self.name, self.limits = name, limits
        self.file_size: int | None = None
        self.at = ""  # nothing yet: opening the file

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except ModelFormatError:
            raise
        except LrpRefError as exc:  # e.g. a layer refusing its parameters
            raise ModelFormatError(f"{self.name}: {self.at or 'the file'}: {exc}") from exc
        except _READ_ERRORS as exc:
            text = " ".join(str(exc).split())[:300]
            at = f" at {self.at}" if self.at else ""
            raise ModelFormatError(f"{self.name}: HDF5 could not read the file{at}: {type(exc).__name__}: {text}"
                                   ) from exc

    def fits_file(self, n_bytes: int, what: str) -> None:
        if self.file_size is not None and n_bytes > self.file_size:
            raise ModelFormatError(f"{what}: {n_bytes} bytes declared, more than the whole file holds "
                                   f"({self.file_size} bytes)")


# ----------------------------------------------------------------------------- load


def load(path: PathLike, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS,
         max_layers: int = MAX_LAYERS, untrusted: bool = False) -> Graph:
    """Read a model written by :func:`save`, or by any writer that follows ``weights/README.md``.

    Parameters
    ----------
    path : str, bytes or path-like
        Bytes are decoded as :func:`os.fsdecode` does.
    max_bytes : int, default 2**30
        Refuse files whose parameter datasets together declare more bytes.
    max_elements : int, default 2**28
        Refuse any dataset or attribute that declares more elements.
    max_layers : int, default 1024
        Refuse files with more layers.
    untrusted : bool, default False
        First read the whole file in a child process (:func:`check_file`, with
        its default time and memory limits), so that a crash or an endless loop
        inside libhdf5 on a corrupted file ends the child, not this process;
        then load it here.  Costs a Python start-up (about 0.3 s).

    Returns
    -------
    Sequential
        In the dtype named by the root attribute ``dtype``, with the metadata
        (in the normal form of :func:`save`) as ``model.metadata``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IOArgumentError
        If ``path`` is not a str, bytes or path-like, or a limit not a positive int.
    ModelFormatError
        For every problem with the file, naming it: not HDF5 or not an lrp_ref
        model, written with a newer schema, anything missing, unknown, of the
        wrong type or shape, over a limit or larger than the file itself
        (checked before any data is read), stored in a way the format does not
        allow, non-finite, metadata that does not fit the layers, an error of
        the HDF5 library on a damaged file, and in untrusted mode a crash,
        timeout or memory blow-up of the child.
    """
    p = _path(path, "load")
    limits = _limits(max_bytes, max_elements, max_layers, "load")
    if not untrusted:
        return _load(p, limits)
    before = _identity(p)
    check_file(p, max_bytes=limits.max_bytes, max_elements=limits.max_elements, max_layers=limits.max_layers)
    model = _load(p, limits)
    if _identity(p) != before:
        raise ModelFormatError(f"{p}: the file changed while it was being validated; load it again")
    return model


def _identity(p: Path) -> tuple[int, ...]:
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(errno.ENOENT, "No such lrp_ref model file", str(p)) from None
    except OSError as exc:
        raise ModelFormatError(f"{p}: cannot access the file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ModelFormatError(f"{p}: not a regular file; expected an lrp_ref HDF5 model")
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _load(p: Path, limits: _Limits) -> Graph:
    _identity(p)
    walk = _Walk(str(p), limits)
    with walk.guard():
        if not h5py.is_hdf5(str(p)):
            raise ModelFormatError(f"{p}: not an HDF5 file (no HDF5 signature); expected an lrp_ref HDF5 model")
        with h5py.File(str(p), "r") as f:
            walk.file_size = int(f.id.get_filesize())
            return _read(f, walk)


def check_file(path: PathLike, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS,
               max_layers: int = MAX_LAYERS, timeout: float = 30.0, memory: int | None = None) -> str:
    """Load ``path`` in a child process under limits and report on it in one line.

    The child runs :func:`load` with the given limits and reads every value,
    with ``timeout`` seconds of wall-clock time and ``memory`` bytes of address
    space (``RLIMIT_AS``; default ``2 * max_bytes + 2**30``), without core
    dumps.  Nothing the file does can then crash, hang or exhaust this process.

    Parameters
    ----------
    path : str, bytes or path-like
    max_bytes, max_elements, max_layers : int
        As for :func:`load`.
    timeout : float, default 30
        Seconds before the child is killed (its Python start-up included).
    memory : int, optional
        Address-space limit of the child in bytes.

    Returns
    -------
    str
        ``"<path>: ok: <n> layers, <k> float64 parameters, input_shape (...)"``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFormatError
        If :func:`load` refuses the file (with its message), or the child
        crashed (the signal is named: e.g. SIGSEGV inside libhdf5), ran past
        ``timeout`` or out of memory.
    """
    p = _path(path, "check_file")
    limits = _limits(max_bytes, max_elements, max_layers, "check_file")
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout < math.inf):
        raise IOArgumentError(f"check_file: timeout must be a positive number of seconds; got {_kind(timeout)}")
    if memory is not None and (not isinstance(memory, (int, np.integer)) or isinstance(memory, bool) or memory < 1):
        raise IOArgumentError(f"check_file: memory must be a positive int (bytes); got {_kind(memory)}")
    _identity(p)
    memory = 2 * limits.max_bytes + 2**30 if memory is None else int(memory)
    report = _sandbox.validate(p, limits._asdict(), float(timeout), memory)
    shape = report.get("input_shape")
    return (f"{p}: ok: {report['layers']} layers, {report['parameters']} {report['dtype']} parameters, "
            + (f"input_shape {tuple(shape)}" if shape else "no input_shape"))


def _read(f: Any, walk: _Walk) -> Graph:
    where, limits = walk.name, walk.limits
    attrs = _attributes(f, walk, f"{where}: root", _MAX_ROOT_ATTRIBUTES)
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
    walk.at = "the root group"
    members = _member_names(f, f"{where}: root", "member", 1)
    layers = _child(f, "layers", h5py.Group, f"{where}: group 'layers'")
    _exact(members, ("layers",), (), f"{where}: root", "member")
    walk.at = "group 'layers'"
    _exact(_member_names(layers.attrs, f"{where}: group 'layers'", "attribute", 0), (), (), f"{where}: group 'layers'",
           "attribute")
    if (count := len(layers)) > limits.max_layers:
        raise ModelFormatError(f"{where}: group 'layers' holds {count} members, more than max_layers="
                               f"{limits.max_layers}; pass a larger max_layers to load() if you trust the file")
    names = sorted(layers)
    if not names:
        raise ModelFormatError(f"{where}: group 'layers' is empty; a model needs at least one layer")
    width = max(3, len(str(len(names) - 1)))
    expected_names = [f"{i:0{width}d}" for i in range(len(names))]
    if names != expected_names:
        found, expected = set(names), set(expected_names)
        missing = [f"layers/{n}" for n in expected_names if n not in found]
        extra = [f"layers/{n}" for n in names if n not in expected]
        raise ModelFormatError(f"{where}: layer groups must be named {expected_names[0]}..{expected_names[-1]} "
                               f"(zero-padded to {width} digits); missing: {_listing(missing)}; unexpected: "
                               f"{_listing(extra)}")
    plans = [_plan(layers, n, i, dtype, walk, version) for i, n in enumerate(names)]
    total = sum(math.prod(ds.shape) * ds.dtype.itemsize for _, _, _, datasets, _ in plans for ds in datasets.values())
    if total > limits.max_bytes:
        raise ModelFormatError(f"{where}: the parameters declare {total} bytes, more than max_bytes="
                               f"{limits.max_bytes}; pass a larger max_bytes to load() if you trust the file")
    walk.fits_file(total, f"{where}: the parameters together")
    built = [_build(*plan[:4], dtype, walk) for plan in plans]
    walk.at = "the nodes (attributes 'name' and 'inputs')"
    nodes = None
    if version >= 2:
        nodes = []
        for plan, layer in zip(plans, built):
            name, inputs = plan[4]  # type: ignore[misc]
            nodes.append(Node(name, layer, inputs))
    model = _model(built, nodes)
    walk.at = "the root attributes (metadata)"
    meta = _metadata(attrs, model, where)
    return Sequential(model.layers, meta) if isinstance(model, Sequential) else Graph(model.nodes, meta)


def _model(layers: list[Layer], nodes: list[Node] | None) -> Graph:
    """A Sequential where the nodes form the default chain (or schema 1 has no nodes), else a Graph."""
    if nodes is None or all(n.name == str(i) and n.inputs == ((INPUT,) if i == 0 else (str(i - 1),))
                            for i, n in enumerate(nodes)):
        return Sequential(layers)
    return Graph(nodes)


def _listing(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _member_names(container: Any, where: str, noun: str, allowed: int) -> set[str]:
    """The member or attribute names of ``container``; their number is checked before any is listed."""
    count = len(container)
    if count > max(allowed, _LISTED):
        raise ModelFormatError(f"{where}: {count} {noun}s; expected at most {allowed}")
    return set(container)


def _attributes(obj: Any, walk: _Walk, where: str, cap: int, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Attributes of ``obj`` (all, or those named in ``only``), each checked from its type and dataspace first."""
    attrs = obj.attrs
    if (count := len(attrs)) > cap:
        raise ModelFormatError(f"{where}: {count} attributes, more than the {cap} allowed")
    out = {}
    for name in (list(attrs) if only is None else [n for n in only if n in attrs]):
        walk.at = f"{where.removeprefix(walk.name + ': ')}, attribute {name!r}"
        aid = attrs.get_id(name)
        kind = aid.get_space().get_simple_extent_type()
        if kind == h5py.h5s.NULL:
            raise ModelFormatError(f"{where}: attribute {name!r} has no value (a null dataspace)")
        n = math.prod(aid.shape or ())
        if n > walk.limits.max_elements:
            raise ModelFormatError(f"{where}: attribute {name!r} declares {n} elements, more than "
                                   f"{walk.limits.max_elements}")
        tid = aid.get_type()
        if (cls := tid.get_class()) not in _ATTRIBUTE_CLASSES:
            raise ModelFormatError(f"{where}: attribute {name!r} has an HDF5 {_CLASS_NAMES.get(cls, str(cls))} type; "
                                   "expected an integer, a float or a string")
        walk.fits_file(max(n * tid.get_size(), aid.get_storage_size()), f"{where}: attribute {name!r}")
        out[name] = attrs[name]
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
        raise ModelFormatError(f"{where}: unexpected {noun} {_listing(list(map(repr, extra)))}; allowed: {allowed}")


def _plan(layers: Any, name: str, index: int, dtype: np.dtype[Any], walk: _Walk, version: int
          ) -> tuple[str, _Spec, dict[str, Any], dict[str, Any], tuple[str, tuple[str, ...]] | None]:
    """Check one layer group from HDF5 metadata alone; returns what :func:`_build` needs, and its node (schema 2)."""
    path = f"layers/{name}"
    walk.at = path
    g = _child(layers, name, h5py.Group, f"{walk.name}: {path}")
    head = _attributes(g, walk, f"{walk.name}: {path}", _MAX_LAYER_ATTRIBUTES, ("type",))
    if "type" not in head:
        raise ModelFormatError(f"{walk.name}: {path}: missing attribute 'type'; expected one of {', '.join(_LAYERS)}")
    if (kind := _text(head["type"], f"{walk.name}: {path}: attribute 'type'")) not in _LAYERS:
        raise ModelFormatError(f"{walk.name}: {path}: unknown layer type {kind!r}; expected one of "
                               f"{', '.join(_LAYERS)}")
    spec, where = _LAYERS[kind], f"{walk.name}: {path} ({kind})"
    if spec.schema > version:
        raise ModelFormatError(f"{where}: layer type {kind!r} needs schema {spec.schema}; the file says schema "
                               f"{version}")
    graph = ("name", "inputs") if version >= 2 else ()
    extra = tuple(k for k, _ in spec.extra) if version >= 2 else ()
    wanted = ("type", "index", *graph, *spec.pairs, *spec.ints, *spec.floats, *spec.sides)
    _exact(set(g.attrs), wanted, extra, where, "attribute")
    attrs = {**head, **_attributes(g, walk, where, len(wanted) + len(extra), wanted[1:] + extra)}
    if _integer(attrs["index"], f"{where}: attribute 'index'") != index:
        raise ModelFormatError(f"{where}: attribute 'index' is {attrs['index']}; expected {index} (its position)")
    hyper: dict[str, Any] = {k: _pair(attrs[k], f"{where}: attribute {k!r}") for k in spec.pairs}
    hyper.update({k: _integer(attrs[k], f"{where}: attribute {k!r}") for k in spec.ints})
    hyper.update({k: _sides(attrs[k], f"{where}: attribute {k!r}", version) for k in spec.sides})
    for k, _ in spec.extra:
        if k in attrs:
            hyper[k] = _sides(attrs[k], f"{where}: attribute {k!r}", version) if k == "padding" else \
                _integer(attrs[k], f"{where}: attribute {k!r}")
    for k, value in hyper.items():
        _bounded(value, f"{where}: attribute {k!r}")
    if "count_include_pad" in hyper:
        if hyper["count_include_pad"] not in (0, 1):
            raise ModelFormatError(f"{where}: attribute 'count_include_pad' must be 0 or 1; got "
                                   f"{hyper['count_include_pad']}")
        hyper["count_include_pad"] = bool(hyper["count_include_pad"])
    hyper.update({k: _real(attrs[k], f"{where}: attribute {k!r}") for k in spec.floats})
    node = None
    if graph:
        node = (_text(attrs["name"], f"{where}: attribute 'name'"),
                tuple(_names(attrs["inputs"], f"{where}: attribute 'inputs'")))
    walk.at = path
    _exact(_member_names(g, where, "member", len(spec.required + spec.optional)), spec.required, spec.optional, where,
           "dataset")
    datasets = {k: _child(g, k, h5py.Dataset, f"{walk.name}: {path}/{k}") for k in sorted(g)}
    for k, ds in datasets.items():
        walk.at = f"{path}/{k}"
        _check_dataset(ds, f"{walk.name}: {path}/{k}", dtype, walk)
    _check_shapes(kind, hyper, {k: tuple(ds.shape) for k, ds in datasets.items()}, where)
    return where, spec, hyper, datasets, node


def _sides(value: Any, what: str, version: int) -> tuple[int, ...]:
    """Padding: two integers (rows, columns), or from schema 2 four (top, bottom, left, right)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.shape not in ((2,), (4,)) or (arr.shape == (4,) and version < 2):
        allowed = "two integers (shape (2,))" + (" or four (shape (4,))" if version >= 2 else "")
        raise ModelFormatError(f"{what} must be {allowed}; got {_kind(value)}")
    return tuple(int(v) for v in arr)


def _check_dataset(ds: Any, path: str, dtype: np.dtype[Any], walk: _Walk) -> None:
    """Check a parameter dataset from its HDF5 metadata alone: nothing is read."""
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT, h5py.h5d.CHUNKED) or dcpl.get_external_count():
        raise ModelFormatError(f"{path}: virtual or external storage is not allowed; data must live in the file")
    if ds.id.get_space().get_simple_extent_type() == h5py.h5s.NULL:
        raise ModelFormatError(f"{path}: has no dataspace (an empty dataset); expected an array")
    if (n := math.prod(ds.shape)) > walk.limits.max_elements:
        raise ModelFormatError(f"{path}: declares shape {ds.shape} = {n} elements, more than "
                               f"max_elements={walk.limits.max_elements}")
    tid = ds.id.get_type()
    if tid.get_class() != h5py.h5t.FLOAT or tid.get_size() not in (4, 8):
        cls = tid.get_class()
        found = f"dtype {ds.dtype}" if cls in (h5py.h5t.INTEGER, h5py.h5t.FLOAT) else \
            f"an HDF5 {_CLASS_NAMES.get(cls, str(cls))} type"
        raise ModelFormatError(f"{path}: parameters must be float32 or float64; found {found}")
    if ds.dtype.newbyteorder("=") != dtype:  # either byte order is fine
        raise ModelFormatError(f"{path}: dtype {ds.dtype} differs from the model dtype {dtype} (root attribute "
                               "'dtype')")
    if n == 0:
        raise ModelFormatError(f"{path}: shape {ds.shape} has no elements")
    n_bytes = n * ds.dtype.itemsize
    walk.fits_file(n_bytes, path)
    if layout == h5py.h5d.CHUNKED:
        _check_chunks(ds, dcpl, path, n_bytes)
    elif (stored := ds.id.get_storage_size()) < n_bytes:
        raise ModelFormatError(f"{path}: declares {n_bytes} bytes but the file stores {stored} of them (the data "
                               "were never written)")
    elif (offset := ds.id.get_offset()) is not None and walk.file_size is not None and \
            offset + n_bytes > walk.file_size:
        raise ModelFormatError(f"{path}: its {n_bytes} bytes at offset {offset} run past the end of the file "
                               f"({walk.file_size} bytes)")


def _check_chunks(ds: Any, dcpl: Any, path: str, n_bytes: int) -> None:
    """Chunked storage: only size-keeping filters, a bounded number of chunks, every one of them written."""
    for i in range(dcpl.get_nfilters()):
        code, _, _, name = dcpl.get_filter(i)
        if code not in _FILTERS:
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            raise ModelFormatError(f"{path}: is stored with the HDF5 filter {code} ({label}); lrp_ref model files "
                                   f"are uncompressed (allowed filters: {', '.join(_FILTERS.values())}); rewrite it "
                                   "uncompressed, e.g. with h5repack -f NONE")
    chunk = dcpl.get_chunk()
    if len(chunk) != len(ds.shape) or min(chunk) < 1:
        raise ModelFormatError(f"{path}: chunk shape {chunk} does not fit the dataset shape {ds.shape}")
    expected = math.prod(-(-n // c) for n, c in zip(ds.shape, chunk))
    if expected > _MAX_CHUNKS:
        raise ModelFormatError(f"{path}: shape {ds.shape} in chunks of {chunk} makes {expected} chunks, more than "
                               f"{_MAX_CHUNKS}")
    if (stored := ds.id.get_num_chunks()) != expected:
        raise ModelFormatError(f"{path}: stores {stored} of its {expected} chunks (the data were never written)")


def _check_shapes(kind: str, hyper: dict[str, Any], shapes: dict[str, tuple[int, ...]], where: str) -> None:
    w, b, k = shapes.get("weight"), shapes.get("bias"), hyper.get("kernel_size")
    if w is not None and kind in ("Dense", "Conv2d"):
        ndim, layout = (2, "(out, in)") if kind == "Dense" else (4, "(out, in/groups, kh, kw)")
        if len(w) != ndim:
            raise ModelFormatError(f"{where}: weight must have {ndim} dimensions {layout}; found shape {w}")
        if b is not None and b != w[:1]:
            raise ModelFormatError(f"{where}: bias must have shape ({w[0]},) to match weight {w}; found {b}")
        if kind == "Conv2d" and w[2:] != k:
            raise ModelFormatError(f"{where}: weight shape {w} does not match attribute kernel_size {k}")
    if kind == "Add" and w is not None and w != (hyper["n_inputs"],):
        raise ModelFormatError(f"{where}: weight must have shape (n_inputs,) = ({hyper['n_inputs']},); found {w}")
    if kind.startswith("BatchNorm") and (len(set(shapes.values())) != 1 or any(len(s) != 1 for s in shapes.values())):
        raise ModelFormatError(f"{where}: gamma, beta, running_mean and running_var must be vectors of one length "
                               f"(C,); found {shapes}")
    if kind == "AvgPool2d" and shapes["window_weight"] != k:
        raise ModelFormatError(f"{where}: window_weight must have shape kernel_size {k}; found "
                               f"{shapes['window_weight']}")


def _build(where: str, spec: _Spec, hyper: dict[str, Any], datasets: dict[str, Any], dtype: np.dtype[Any],
           walk: _Walk) -> Layer:
    """Read the checked datasets, check they are finite and construct the layer."""
    kwargs = dict(hyper)
    for k, ds in datasets.items():
        walk.at = ds.name.lstrip("/")
        kwargs[k] = a = np.asarray(ds[()], dtype=dtype)
        if not np.all(np.isfinite(a)):
            nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            raise ModelFormatError(f"{walk.name}: {walk.at}: parameters must be finite; found {nan} NaN and {inf} "
                                   f"inf value(s) among {a.size}")
    if spec.make is Conv2d:
        del kwargs["kernel_size"]  # implied by the weight, and checked against it
    try:
        return spec.make(**kwargs, dtype=dtype)
    except LrpRefError as exc:  # hyper-parameters the layer itself refuses, e.g. stride 0
        raise ModelFormatError(f"{where}: {exc}") from None
