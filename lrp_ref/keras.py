"""Import Keras models from their files, without Keras: :func:`from_keras`.

Two file formats are read, with :mod:`zipfile`, :mod:`json` and :mod:`h5py`
only (no TensorFlow, no Keras):

* Keras 3's ``.keras`` (also written by tf.keras 2.13 and 2.14): a zip of
  ``config.json`` (the architecture), ``metadata.json`` and ``model.weights.h5``,
  where each layer's variables are the datasets ``vars/0``, ``vars/1``... of a
  group under ``layers/`` (tf.keras: ``_layer_checkpoint_dependencies/``)
  named after the layer's class (``conv2d``, ``conv2d_1``...; Keras 3 also
  writes the layer's own name as the attribute ``name`` of ``vars``);
* the legacy HDF5 ``.h5`` of ``model.save("m.h5")`` (Keras 2, tf.keras and
  Keras 3): the root attribute ``model_config`` (the architecture as JSON)
  and a group ``model_weights/<layer name>`` whose attribute ``weight_names``
  lists its variables (``conv2d/kernel:0``, ``bn/moving_mean``...).

Sequential and functional models import, in Keras 2's configuration format
(``inbound_nodes`` as ``[[layer, node, tensor, kwargs], ...]``) and Keras 3's
(``{"args": [...], "kwargs": {...}}``).  The layers are those of
:data:`lrp_ref._keras_layers.SUPPORTED`:

======================================  ========================================================
Keras                                   lrp_ref
======================================  ========================================================
``Dense(activation=...)``               ``Dense`` (kernel (in, out) -> weight (out, in)), then
                                        ``ReLU`` for ``"relu"``; ``"softmax"`` only at the end
``Conv2D`` (valid/same, strides,        ``Conv2d`` (kernel (kh, kw, in, out) ->
dilation_rate, groups)                  (out, in, kh, kw)); ``'same'`` as TensorFlow pads it
                                        (:func:`lrp_ref.same_padding`)
``MaxPooling2D``, ``AveragePooling2D``  ``MaxPool2d``; ``AvgPool2d`` (``'same'``: the padding is
                                        not counted in the average, as in TensorFlow)
``GlobalAveragePooling2D``,             ``GlobalAvgPool2d`` / ``MaxPool2d`` over the whole image,
``GlobalMaxPooling2D``                  then ``Flatten`` unless ``keepdims``
``Flatten``                             ``Flatten`` (the order of the features: see below)
``ReLU``, ``Activation``, ``Softmax``   ``ReLU``; ``"linear"`` is nothing; a final softmax is
                                        dropped with a note (LRP explains the logits)
``BatchNormalization``                  ``BatchNorm1d`` / ``BatchNorm2d`` with the moving
                                        statistics (inference)
``Add``, ``Concatenate`` (channels)     ``Add``, ``Concat``
``ZeroPadding2D``                       folded into the ``Conv2D`` or pooling layer after it
                                        (before a ``MaxPooling2D`` only on a ReLU's output)
``Dropout`` and the noise layers        nothing (inference)
======================================  ========================================================

**Input layout.** Keras images are channels-last ``(N, H, W, C)``; the
imported model is lrp_ref's, channels-first ``(N, C, H, W)``: pass it
``x.transpose(0, 3, 1, 2)`` (:func:`nhwc_to_nchw`) and read its relevance
back with :func:`nchw_to_nhwc`.  The model computes the same function:
Keras's ``Flatten`` lists an image pixel by pixel, lrp_ref's channel by
channel, so the columns of the next ``Dense`` (or the parameters of a
``BatchNormalization`` on the features) are permuted to match.  Models whose
layers all say ``data_format="channels_first"`` keep their layout.

**Hostile files.** Nothing is extracted from the zip; before anything is
read, the number of members, their declared sizes (``config.json`` at most
:data:`MAX_JSON_BYTES`, the weights at most ``max_bytes``) and, for each
weight, its dataset's type, shape and size are checked.  Every refusal is a
one-line :class:`~lrp_ref.errors.ModelFormatError` naming the file and what
was found, and so is an error of the zip, JSON or HDF5 readers on a damaged
or truncated file.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import h5py
import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._checks import check_dtype
from ._import_graph import GraphBuilder
from ._keras_graph import parse_model
from ._keras_layers import Converter
from .errors import IOArgumentError, LrpRefError, ModelFormatError
from .graph import Graph, Sequential
from .io import _READ_ERRORS, MAX_BYTES, PathLike, _path

__all__ = ["MAX_JSON_BYTES", "from_keras", "is_keras_h5", "nchw_to_nhwc", "nhwc_to_nchw"]

Array = NDArray[Any]

#: Largest ``config.json`` (or ``model_config`` attribute) read; a ResNet-50's is about 100 kB.
MAX_JSON_BYTES = 2**26
#: Most members of a ``.keras`` zip (Keras writes three).
MAX_ZIP_MEMBERS = 64


def nhwc_to_nchw(x: Array) -> Array:
    """A Keras image batch ``(N, H, W, C)`` as the imported model's input ``(N, C, H, W)``; other ranks unchanged."""
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def nchw_to_nhwc(x: Array) -> Array:
    """An lrp_ref image batch (a relevance map) ``(N, C, H, W)`` in Keras's layout ``(N, H, W, C)``."""
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def is_keras_h5(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file holding a Keras architecture (root attribute ``model_config``).

    Tells a legacy Keras ``.h5`` from lrp_ref's own HDF5 models, which share the suffix.  Never
    raises: a file that cannot be opened is not a Keras file.
    """
    try:
        p = _path(path, "is_keras_h5")
        if not (p.is_file() and h5py.is_hdf5(str(p))):
            return False
        with h5py.File(str(p), "r") as f:
            return "model_config" in f.attrs
    except (LrpRefError, *_READ_ERRORS):
        return False


def from_keras(path: PathLike, dtype: DTypeLike = np.float64, *, input_shape: Any = None,
               max_bytes: int = MAX_BYTES) -> Sequential | Graph:
    """Read a Keras ``.keras`` or legacy ``.h5`` model file into an lrp_ref model (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        A Keras 3 ``.keras`` zip or a legacy HDF5 file holding ``model_config``.
    dtype : float64 (default) or float32
        dtype of the lrp_ref model; weights are converted from what the file stores.
    input_shape : tuple of int, optional
        One sample's shape in Keras's layout, e.g. ``(32, 32, 3)``; needed only
        when the file leaves a dimension of the input unknown (``None``).
    max_bytes : int
        Most bytes of weights read (and of the ``.h5`` file / the zip's weights member).

    Returns
    -------
    Sequential or Graph
        The same function as the Keras model in inference mode, on NCHW input
        (``metadata["input_shape"]`` is one sample's lrp_ref shape).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IOArgumentError
        If ``path``, ``input_shape`` or ``max_bytes`` is not what it should be.
    ModelFormatError
        For anything in the file that cannot be imported: not a Keras file,
        truncated, a zip without ``config.json``, missing or misshapen weights,
        an unsupported layer or option (named, with its class and the
        supported list).
    """
    p = _path(path, "from_keras")
    dt = check_dtype(dtype)
    if not isinstance(max_bytes, (int, np.integer)) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise IOArgumentError(f"from_keras: max_bytes must be a positive int; got {max_bytes!r}")
    if input_shape is not None and not (isinstance(input_shape, (tuple, list)) and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in input_shape)):
        raise IOArgumentError(f"from_keras: input_shape must be a tuple of positive ints in Keras's layout, e.g. "
                              f"(32, 32, 3); got {input_shape!r}")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(2, "No such Keras model file", str(p)) from None
    if not stat.S_ISREG(st.st_mode):
        hint = ("; a TensorFlow SavedModel directory is not read: save the model with model.save('m.keras') or "
                "model.save('m.h5')") if stat.S_ISDIR(st.st_mode) else ""
        raise ModelFormatError(f"{p}: not a regular file; expected a Keras .keras or .h5 model{hint}")
    try:
        with _opened(p, st.st_size, max_bytes) as (config, weights, version):
            model = parse_model(config, input_shape)
            builder = GraphBuilder("from_keras")
            converter = Converter(builder, weights, dt, model.channels_last)
            converter.input(model.input, model.input_shape)
            for call in model.calls:
                converter.add(call)
            built = builder.build(model.output, {"input_shape": model.input_shape,
                                                 "imported_from": f"Keras {version} {model.kind} model"})
            if converter.tensors[model.output].pad != (0, 0, 0, 0):
                raise ModelFormatError(f"from_keras: the model ends with a ZeroPadding2D ({model.output!r}); "
                                       "lrp_ref folds zero padding into the layer after it")
            if converter.tensors[model.output].order is not None:
                raise ModelFormatError(f"from_keras: the model's output {model.output!r} is a flattened image, "
                                       "whose features Keras and lrp_ref order differently; end the model with a "
                                       "Dense layer")
            return built
    except LrpRefError as exc:
        text = str(exc)
        raise ModelFormatError(text if text.startswith(str(p)) else f"{p}: {text}") from None
    except (*_READ_ERRORS, zipfile.BadZipFile, RecursionError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise ModelFormatError(f"{p}: could not read the file (damaged or truncated?): {type(exc).__name__}: "
                               f"{text}") from None


@contextmanager
def _opened(p: Any, size: int, max_bytes: int) -> Iterator[tuple[Any, Any, str]]:
    """(the parsed configuration, the weights reader, the Keras version) of the file ``p``."""
    with open(p, "rb") as fh:
        head = fh.read(8)
    if zipfile.is_zipfile(p):
        with ExitStack() as stack:
            config, weights_file, version = _read_zip(p, max_bytes)
            f = stack.enter_context(h5py.File(io.BytesIO(weights_file), "r"))
            yield config, _V3Weights(f, config, max_bytes), version
        return
    if head != b"\x89HDF\r\n\x1a\n" and not h5py.is_hdf5(str(p)):
        kind = "a truncated zip" if head.startswith(b"PK") else "neither a zip (.keras) nor an HDF5 (.h5) file"
        raise ModelFormatError(f"not a Keras model file: {kind}")
    if size > max_bytes:
        raise ModelFormatError(f"the file holds {size} bytes, more than max_bytes={max_bytes}; pass a larger "
                               "max_bytes if you trust it")
    with h5py.File(str(p), "r") as f:
        attrs = f.attrs
        if "model_config" not in attrs:
            if attrs.get("format") in ("lrp_ref", b"lrp_ref"):
                raise ModelFormatError("this is lrp_ref's own model format: read it with lrp_ref.load")
            what = ("a weights-only file (save_weights): it has no architecture; save the whole model with "
                    "model.save()") if "layer_names" in attrs else f"attributes {sorted(attrs)[:8]}"
            raise ModelFormatError(f"no root attribute 'model_config' (the Keras architecture); found {what}")
        raw = attrs["model_config"]
        config = _json(raw.encode() if isinstance(raw, str) else raw, "the attribute 'model_config'")
        group = f.get("model_weights")  # a layer that needs weights refuses a file without them
        version = attrs.get("keras_version", "?")
        yield config, _LegacyWeights(group if isinstance(group, h5py.Group) else None, max_bytes), _text(version)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _json(raw: Any, what: str) -> Any:
    if not isinstance(raw, (bytes, np.bytes_)):
        raise ModelFormatError(f"{what} must be JSON text; found {type(raw).__name__}")
    if len(raw) > MAX_JSON_BYTES:
        raise ModelFormatError(f"{what} holds {len(raw)} bytes of JSON, more than MAX_JSON_BYTES={MAX_JSON_BYTES}")
    try:
        value = json.loads(bytes(raw))
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ModelFormatError(f"{what} must be a JSON object; found {type(value).__name__}")
    return value


def _read_zip(p: Any, max_bytes: int) -> tuple[Any, bytes, str]:
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ModelFormatError(f"the zip holds {len(infos)} members, more than {MAX_ZIP_MEMBERS}; a .keras file "
                                   "holds config.json, metadata.json and model.weights.h5")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFormatError("the zip names a member twice; refusing an ambiguous archive")
        by = {i.filename: i for i in infos}
        limits = {"config.json": MAX_JSON_BYTES, "metadata.json": MAX_JSON_BYTES, "model.weights.h5": max_bytes}
        for name in ("config.json", "model.weights.h5"):
            if name not in by:
                found = ", ".join(repr(n[:80]) for n in names[:8]) or "nothing"
                raise ModelFormatError(f"a zip without {name}: not a Keras .keras file (found {found})")
        for name, limit in limits.items():
            if name in by and by[name].file_size > limit:
                raise ModelFormatError(f"{name} declares {by[name].file_size} bytes, more than the limit {limit}"
                                       + ("; pass a larger max_bytes if you trust the file"
                                          if name == "model.weights.h5" else ""))
            if name in by and by[name].flag_bits & 0x1:
                raise ModelFormatError(f"{name} is encrypted")
        config = _json(z.read("config.json"), "config.json")
        version = "3"
        if "metadata.json" in by:
            meta = _json(z.read("metadata.json"), "metadata.json")
            version = str(meta.get("keras_version", version))[:40]
        return config, z.read("model.weights.h5"), version


# ----------------------------------------------------------------------------- weights


def _checked(ds: Any, what: str, shape: tuple[int, ...], budget: list[int]) -> Array:
    """The array of dataset ``ds`` after checking type, shape and size from its metadata."""
    if not isinstance(ds, h5py.Dataset):
        raise ModelFormatError(f"{what}: missing weight; found {type(ds).__name__ if ds is not None else 'nothing'}")
    if ds.shape != shape:
        raise ModelFormatError(f"{what}: weight of shape {ds.shape}; expected {shape}")
    if ds.dtype.kind != "f":
        raise ModelFormatError(f"{what}: weight of dtype {ds.dtype}; expected floating point")
    if ds.is_virtual or ds.external:
        raise ModelFormatError(f"{what}: the data lives outside the file (virtual or external dataset)")
    n = int(np.prod(shape, dtype=np.int64)) * ds.dtype.itemsize
    if n > budget[0]:
        raise ModelFormatError(f"{what}: the weights read so far pass max_bytes; pass a larger max_bytes if you "
                               "trust the file")
    budget[0] -= n
    a = np.asarray(ds[()], dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ModelFormatError(f"{what}: {int((~np.isfinite(a)).sum())} non-finite value(s)")
    return a


class _LegacyWeights:
    """Variables of a legacy ``.h5``: ``model_weights/<layer>`` lists them in its attribute ``weight_names``."""

    def __init__(self, group: Any, max_bytes: int) -> None:
        self.group, self.budget = group, [max_bytes]

    def arrays(self, name: str, cls: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Array]:
        where = f"layer {name!r} ({cls})"
        g = self.group.get(name) if self.group is not None else None
        if not isinstance(g, h5py.Group):
            raise ModelFormatError(f"{where}: missing weights: no group model_weights/{name}")
        listed = [_text(n) for n in np.atleast_1d(g.attrs.get("weight_names", np.array([])))]
        by_role = {n.rsplit("/", 1)[-1].split(":", 1)[0]: n for n in listed}
        if sorted(by_role) != sorted(shapes) or len(listed) != len(shapes):
            raise ModelFormatError(f"{where}: expected the weights {', '.join(shapes)}; found "
                                   f"{', '.join(listed) or 'none'}")
        return {role: _checked(g.get(by_role[role]), f"{where} weight {by_role[role]!r}", shape, self.budget)
                for role, shape in shapes.items()}


def _snake(cls: str) -> str:
    """The group name Keras's saver derives from a class name (``Conv2D`` -> ``conv2d``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", cls))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class _V3Weights:
    """Variables of a ``.keras`` zip: ``layers/<snake class name>[_k]/vars/0..n-1`` in the layer's own order."""

    def __init__(self, f: Any, config: Any, max_bytes: int) -> None:
        self.budget = [max_bytes]
        container = next((f[k] for k in ("layers", "_layer_checkpoint_dependencies")
                          if k in f and isinstance(f[k], h5py.Group)), None)
        self.groups: dict[str, Any] = {}
        if container is None:
            return
        # the saver names each layer's group after its class, numbering repeats: conv2d, conv2d_1, ...
        layers = config.get("config", {}).get("layers", []) if isinstance(config.get("config"), dict) else []
        used: dict[str, int] = {}
        for entry in layers if isinstance(layers, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
                continue
            key = _snake(entry["class_name"])
            used[key] = used.get(key, -1) + 1
            path = key if used[key] == 0 else f"{key}_{used[key]}"
            cfg = entry.get("config")
            name = cfg.get("name") if isinstance(cfg, dict) else None
            if isinstance(name, str) and path in container:
                self.groups[name] = container[path]
        for g in container.values():  # Keras 3 writes the layer's name beside its variables
            named = g.get("vars") if isinstance(g, h5py.Group) else None
            if isinstance(named, h5py.Group) and isinstance(n := named.attrs.get("name"), (str, bytes)):
                self.groups[_text(n)] = g

    def arrays(self, name: str, cls: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Array]:
        where = f"layer {name!r} ({cls})"
        g = self.groups.get(name)
        v = g.get("vars") if g is not None else None
        if not isinstance(v, h5py.Group):
            raise ModelFormatError(f"{where}: missing weights: no group for it in model.weights.h5")
        found = sorted(v.keys())
        if found != sorted(str(i) for i in range(len(shapes))):
            raise ModelFormatError(f"{where}: expected {len(shapes)} variables ({', '.join(shapes)}); found "
                                   f"{', '.join(found[:8]) or 'none'} in {v.name}")
        return {role: _checked(v.get(str(i)), f"{where} variable {i} ({role})", shape, self.budget)
                for i, (role, shape) in enumerate(shapes.items())}
