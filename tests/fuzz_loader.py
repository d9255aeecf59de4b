"""Fuzz :func:`lrp_ref.io.load` with mutated model files, each loaded in a forked child under limits.

Run it as a script (``make fuzz``, or ``python tests/fuzz_loader.py --cases 10000``)
or import it (``tests/test_fuzz.py``).  A case is fully determined by
``(seed, index)``: :func:`make_case` rebuilds the same file every time.

Base files are the shipped models (``weights/mnist_cnn.h5``,
``weights/mnist_mlp.h5``) and small synthetic models (every layer type, float32
and float64, with and without metadata).  Mutations are

* byte-level: bit flips, byte overwrites (random or boundary values), truncation,
  chunks duplicated, zeroed, inserted or deleted, biased towards the HDF5
  metadata (everything that is not raw dataset storage);
* structural, made with h5py: wrong attribute types, shapes and dtypes, huge
  declared shapes, 10,000-layer lists, missing and extra members, bad strings,
  negative and huge integers, NaN, complex, compound, vlen, enum and reference
  dtypes, soft, external and hard links, compressed and chunked datasets,
  external storage, and more (see ``STRUCTURAL``).

Each ``load`` runs in a child forked from this process (which has already
imported lrp_ref and h5py, so a case costs a fork and the load) with a
wall-clock limit (default 5 s) and an address-space limit (``RLIMIT_AS``,
default 2 GiB).  Outcomes:

=====================  ======================================================
loaded                 ``load`` returned a model
ModelFormatError       the clean refusal
other LrpRefError      another lrp_ref error (acceptable, but not the contract)
unexpected             any other exception (type and message recorded)
hang                   the child was killed at the wall-clock limit while running Python code (the
                       loader's own work: it still answers a Python-level signal)
libhdf5 hang           ... while inside one call into h5py/libhdf5 that never returned (it does not
                       answer: an endless loop in libhdf5's parser on a corrupted file, e.g. in
                       ``H5HG__cache_heap_deserialize``)
memory                 a ``MemoryError`` anywhere in the exception chain
crash                  the child died of a signal (e.g. SIGSEGV inside libhdf5)
=====================  ======================================================
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import lrp_ref
from lrp_ref import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU, Sequential
from lrp_ref.errors import LrpRefError, ModelFormatError

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = ("loaded", "ModelFormatError", "other LrpRefError", "unexpected", "hang", "libhdf5 hang", "memory",
            "crash")
#: Outcomes that are failures of lrp_ref's loader.
BAD = ("unexpected", "hang", "memory")
#: Outcomes inside libhdf5 itself, which only a child process can contain (``load(untrusted=True)``).
CONTAINED = ("libhdf5 hang", "crash")


# ----------------------------------------------------------------------------- base files


def _tiny(dtype: str, metadata: bool) -> Sequential:
    """Every layer type; input (4, 11, 12)."""
    rng = np.random.default_rng(0)
    layers = [
        Conv2d(rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6), stride=(1, 2), padding=(2, 1), dilation=(2, 1),
               groups=2),
        ReLU(),
        MaxPool2d(3, stride=2, padding=1),
        AvgPool2d((2, 1), window_weight=np.array([[0.7], [0.2]])),
        AvgPool2d(2, stride=1),
        Flatten(),
        Dense(rng.normal(size=(7, 24)), rng.normal(size=7)),
        ReLU(),
        Dense(rng.normal(size=(3, 7))),
    ]
    meta: dict[str, Any] = {
        "input_shape": (4, 11, 12), "class_names": ["a", "b", "c"], "input_scale": np.array([0.5, 0.25, 1.0, 2.0]),
        "input_offset": -0.5, "input_low": -0.5, "input_high": 1.0, "dataset": "synthetic", "seed": 3,
        "test_accuracy": 0.5, "milestones": np.array([3, 5]), "note": "tiny",
    }
    return Sequential(layers, meta if metadata else {}).astype(dtype)


def _mlp(dtype: str) -> Sequential:
    rng = np.random.default_rng(1)
    layers = [Flatten(), Dense(rng.normal(size=(5, 12)), rng.normal(size=5)), ReLU(), Dense(rng.normal(size=(2, 5)))]
    return Sequential(layers, {"input_shape": (3, 2, 2)}).astype(dtype)


def base_files(folder: Path) -> dict[str, bytes]:
    """The bytes of every base file, by name (synthetic ones are written into ``folder``)."""
    out = {}
    for name in ("mnist_cnn", "mnist_mlp"):
        out[name] = (ROOT / "weights" / f"{name}.h5").read_bytes()
    for name, model in (("tiny64", _tiny("float64", True)), ("tiny32", _tiny("float32", True)),
                        ("tiny_nometa", _tiny("float64", False)), ("mlp32", _mlp("float32"))):
        path = folder / f"base-{name}.h5"
        lrp_ref.save(model, path)
        out[name] = path.read_bytes()
        if name == "tiny64":  # the same model in HDF5's newest object formats (v2 headers, dense attributes)
            with h5py.File(path, "w", libver="latest") as f:
                lrp_ref.io.write_model(f, model)
            out[f"{name}_latest"] = path.read_bytes()
    return out


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of the raw storage of every contiguous dataset: the bytes that are *not* HDF5 metadata."""
    extents: list[tuple[int, int]] = []

    def visit(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
            extents.append((int(obj.id.get_offset()), int(obj.id.get_storage_size())))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return sorted(extents)


# ----------------------------------------------------------------------------- byte-level mutations


@dataclass(frozen=True)
class Case:
    """One fuzz case: everything :func:`make_case` needs to rebuild its file."""

    seed: int
    index: int
    base: str
    family: str  # "bytes" or "structure"
    kind: str


def _offset(rng: np.random.Generator, size: int, meta: list[tuple[int, int]]) -> int:
    """A byte offset, 80 % of the time inside the HDF5 metadata (``meta`` = non-data ranges)."""
    if size < 1:
        return 0
    if meta and rng.random() < 0.8:
        start, stop = meta[rng.integers(len(meta))]
        return min(int(rng.integers(start, stop)), size - 1)
    return int(rng.integers(size))


_BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\xff" * 8, b"\x00" * 8, b"\xff\xff\xff\x7f",
             b"\x00\x00\x00\x80", b"\xff" * 4, (2**62).to_bytes(8, "little"), (2**31).to_bytes(8, "little")]


def _mutate_bytes(data: bytearray, kind: str, rng: np.random.Generator, meta: list[tuple[int, int]]) -> bytearray:
    size = len(data)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            pos = _offset(rng, size, meta)
            data[pos] ^= 1 << int(rng.integers(8))
    elif kind == "overwrite":
        for _ in range(int(rng.integers(1, 4))):
            pos = _offset(rng, size, meta)
            if rng.random() < 0.5:
                chunk = _BOUNDARY[rng.integers(len(_BOUNDARY))]
            else:
                chunk = rng.integers(0, 256, size=int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
            data[pos:pos + len(chunk)] = chunk[: max(0, size - pos)]
    elif kind == "truncate":
        return data[: _offset(rng, size, meta)]
    elif kind in ("duplicate", "zero"):
        n = int(rng.integers(1, 257))
        src, dst = _offset(rng, size, meta), _offset(rng, size, meta)
        chunk = bytes(data[src:src + n]) if kind == "duplicate" else bytes(n)
        data[dst:dst + len(chunk)] = chunk[: max(0, size - dst)]
    elif kind == "insert":
        pos = _offset(rng, size, meta)
        data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        pos = _offset(rng, size, meta)
        del data[pos:pos + int(rng.integers(1, 65))]
    elif kind == "multiple":
        for _ in range(int(rng.integers(2, 5))):
            data = _mutate_bytes(data, str(rng.choice(BYTE_KINDS[:-1])), rng, meta)
    else:
        raise ValueError(f"unknown byte mutation {kind!r}")
    return data


BYTE_KINDS = ("bitflip", "overwrite", "truncate", "duplicate", "zero", "insert", "delete", "multiple")


# ----------------------------------------------------------------------------- structural mutations


def _objects(f: h5py.File) -> list[Any]:
    """The root, 'layers' and every layer group (the objects that carry attributes)."""
    out: list[Any] = [f]
    if isinstance(f.get("layers", getlink=True), h5py.HardLink) and isinstance(f["layers"], h5py.Group):
        layers = f["layers"]
        out.append(layers)
        for name in layers:
            if isinstance(layers.get(name, getlink=True), h5py.HardLink) and isinstance(layers[name], h5py.Group):
                out.append(layers[name])
    return out


def _datasets(f: h5py.File) -> list[h5py.Dataset]:
    """Every dataset with at least one dimension (what the storage mutations can rewrite)."""
    found: list[h5py.Dataset] = []
    f.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.shape else None)
    return found


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _weird_value(rng: np.random.Generator, f: h5py.File) -> Any:
    """A value of a random, mostly wrong, kind, for an attribute or a dataset."""
    choices: list[Callable[[], Any]] = [
        lambda: "text",
        lambda: np.bytes_(b"fixed\xff\xfe"),                       # fixed-length, invalid UTF-8
        lambda: np.array(b"nul\0inside", dtype="S10"),
        lambda: "x" * int(rng.integers(1000, 60000)),
        lambda: np.int64(rng.integers(-5, 5)),
        lambda: np.int64(2**62),
        lambda: np.int64(-(2**63)),
        lambda: np.uint64(2**64 - 1),
        lambda: np.int8(-128),
        lambda: np.float64("nan"),
        lambda: np.float64("inf"),
        lambda: np.float16(1.5),
        lambda: np.complex128(1 + 2j),
        lambda: np.array([1 + 1j, 2 - 1j]),
        lambda: np.bool_(True),
        lambda: np.zeros((3, 3)),
        lambda: np.zeros((2, 2, 2, 2, 2), dtype=np.int64),
        lambda: np.zeros(0),
        lambda: np.array([2**62, 2**62], dtype=np.int64),
        lambda: np.array([-1, -1], dtype=np.int64),
        lambda: np.array([0, 0], dtype=np.int64),
        lambda: np.array([2**31, 1], dtype=np.int64),
        lambda: np.array([2**64 - 1, 1], dtype=np.uint64),
        lambda: np.array([1.0, np.nan]),
        lambda: np.array(["a", "b"], dtype=h5py.string_dtype()),
        lambda: np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        lambda: np.array([1, 2], dtype=h5py.enum_dtype({"A": 1, "B": 2}, basetype="i1")),
        lambda: np.array([np.arange(3), np.arange(5)], dtype=h5py.vlen_dtype(np.int64)),
        lambda: f.ref,
        lambda: np.array([f.ref], dtype=h5py.ref_dtype),
        lambda: np.arange(int(rng.integers(10_000, 200_000)), dtype=np.float64),   # a big (dense-storage) value
        lambda: h5py.Empty("f8"),
        lambda: np.void(b"\x01\x02\x03"),
        lambda: np.array([b"a\xffb"], dtype="S3"),
    ]
    return _pick(rng, choices)()


def _set_attr(obj: Any, name: str, value: Any) -> None:
    if name in obj.attrs:
        del obj.attrs[name]
    try:
        obj.attrs[name] = value
    except OSError:  # "object header message is too large": only files in the newest format take big attributes
        obj.attrs[name] = value[:1000]


def _replace(parent: Any, name: str, make: Callable[[], Any]) -> None:
    if name in parent:
        del parent[name]
    made = make()
    if made is not None:
        parent[name] = made


def s_attr_wrong(f: h5py.File, rng: np.random.Generator) -> None:
    obj = _pick(rng, _objects(f))
    names = list(obj.attrs) or ["extra"]
    _set_attr(obj, _pick(rng, names), _weird_value(rng, f))


def s_attr_delete(f: h5py.File, rng: np.random.Generator) -> None:
    obj = _pick(rng, _objects(f))
    if names := list(obj.attrs):
        del obj.attrs[_pick(rng, names)]


def s_attr_extra(f: h5py.File, rng: np.random.Generator) -> None:
    obj = _pick(rng, _objects(f))
    name = _pick(rng, ["extra", "input_shape", "class_names", "input_scale", "seed", "test_accuracy", "groups",
                       "padding", "bias", "\xff", "a.b", "x" * 300])
    _set_attr(obj, name, _weird_value(rng, f))


def s_hyper_extreme(f: h5py.File, rng: np.random.Generator) -> None:
    groups = [g for g in _objects(f)[2:] if any(k in g.attrs for k in ("stride", "padding", "kernel_size"))]
    if not groups:
        return s_attr_wrong(f, rng)
    g = _pick(rng, groups)
    name = _pick(rng, [k for k in ("kernel_size", "stride", "padding", "dilation", "groups") if k in g.attrs])
    big = [2**62, 2**63 - 1, -(2**63), 2**31, 2**32 + 1, 10**6, -1, 0]
    if name == "groups":
        value: Any = np.int64(_pick(rng, big))
    else:
        value = np.array([_pick(rng, big), _pick(rng, [*big, 1, 2])], dtype=np.int64)
    _set_attr(g, name, value)


def s_metadata(f: h5py.File, rng: np.random.Generator) -> None:
    values: list[tuple[str, Any]] = [
        ("input_shape", np.array([2**40, 2**40, 2**40])), ("input_shape", np.array([2**62, 1, 1])),
        ("input_shape", np.array([1, 28, 28])), ("input_shape", np.array([0, 5])), ("input_shape", np.array([-1])),
        ("input_shape", np.array([1, 2**31, 2**31])), ("input_shape", np.array([784])),
        ("class_names", np.array(["x"] * 10_000, dtype=h5py.string_dtype())),
        ("input_scale", 0.0), ("input_scale", np.zeros(3)), ("input_low", 2.0), ("input_high", -2.0),
        ("test_accuracy", 1.5), ("seed", 2**64 - 1), ("dtype", "float16"), ("dtype", "float32"),
        ("schema_version", 2**62), ("schema_version", -1), ("format", "LRP_REF"),
    ]
    name, value = _pick(rng, values)
    _set_attr(f, name, np.uint64(value) if name == "seed" else value)


def _layer_groups(f: h5py.File) -> list[Any]:
    return _objects(f)[2:]


def s_dataset_replace(f: h5py.File, rng: np.random.Generator) -> None:
    datasets = _datasets(f)
    if not datasets:
        return s_attr_wrong(f, rng)
    ds = _pick(rng, datasets)
    parent, name, shape, dtype = ds.parent, ds.name.rsplit("/", 1)[1], ds.shape, ds.dtype
    makers: list[Callable[[], Any]] = [
        lambda: np.zeros(shape, dtype=np.int32),
        lambda: np.zeros(shape, dtype=np.complex128),
        lambda: np.zeros(shape, dtype=np.float16),
        lambda: np.zeros(shape, dtype=np.bool_),
        lambda: np.zeros(shape, dtype=[("a", "f8"), ("b", "f8")]),
        lambda: np.full(shape, np.nan, dtype=dtype),
        lambda: np.full(shape, np.inf, dtype=dtype),
        lambda: np.zeros((*shape, 2), dtype=dtype),
        lambda: np.zeros(shape[:-1], dtype=dtype),
        lambda: np.float64(1.0),
        lambda: h5py.Empty("f8"),
        lambda: np.array(["a"] * 3, dtype=h5py.string_dtype()),
        lambda: np.zeros((0, *shape[1:]), dtype=dtype),
        lambda: None,  # deleted
    ]
    _replace(parent, name, _pick(rng, makers))


def s_dataset_huge(f: h5py.File, rng: np.random.Generator) -> None:
    """A dataset declaring far more data than the file holds (nothing written)."""
    datasets = _datasets(f)
    if not datasets:
        return s_attr_wrong(f, rng)
    ds = _pick(rng, datasets)
    parent, name, dtype = ds.parent, ds.name.rsplit("/", 1)[1], ds.dtype
    del parent[name]
    shapes = [(2**20, 2**20), (2**14, 2**13), (2**13, 2**13), (2**27,), (2**26, 2), (2**12, 2**12, 5, 5),
              (10_000, 100, 5, 5), (2**16, 2**16, 2**10, 2)]
    shape = _pick(rng, shapes)
    chunked = rng.random() < 0.5
    kwargs: dict[str, Any] = {"chunks": tuple(min(n, 64) for n in shape)} if chunked else {}
    if rng.random() < 0.3:
        kwargs["fillvalue"] = np.nan
    parent.create_dataset(name, shape=shape, dtype=dtype, **kwargs)


def s_dataset_storage(f: h5py.File, rng: np.random.Generator) -> None:
    """The same data, stored differently: chunked, compressed, filtered, compact, external, huge chunks."""
    datasets = _datasets(f)
    if not datasets:
        return s_attr_wrong(f, rng)
    ds = _pick(rng, datasets)
    parent, name, data = ds.parent, ds.name.rsplit("/", 1)[1], ds[()]
    del parent[name]
    style = _pick(rng, ["gzip", "lzf", "shuffle", "fletcher32", "scaleoffset", "chunked", "compact", "external",
                        "bigchunk", "unallocated", "maxshape"])
    if style == "external":
        ext = Path(f.filename).with_suffix(".bin")  # absolute: HDF5 resolves relative names against the cwd
        parent.create_dataset(name, data=data, external=[(str(ext), 0, data.nbytes)])
    elif style == "compact":
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        if data.nbytes < 60_000:
            space = h5py.h5s.create_simple(data.shape)
            tid = h5py.h5t.py_create(data.dtype)
            dsid = h5py.h5d.create(parent.id, name.encode(), tid, space, dcpl=dcpl)
            dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))
        else:
            parent.create_dataset(name, data=data)
    elif style == "bigchunk":
        chunks = tuple(2 * n + 3 for n in data.shape)
        parent.create_dataset(name, shape=data.shape, dtype=data.dtype, maxshape=(None,) * data.ndim,
                              chunks=chunks if np.prod(chunks) < 2**22 else True)
        parent[name][...] = data
    elif style == "unallocated":
        parent.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=True, fillvalue=np.nan)
    elif style == "maxshape":
        parent.create_dataset(name, data=data, maxshape=(None,) * data.ndim)
    elif style == "scaleoffset":
        parent.create_dataset(name, data=data, scaleoffset=3)
    elif style in ("gzip", "lzf"):
        parent.create_dataset(name, data=data, compression=style)
    elif style == "shuffle":
        parent.create_dataset(name, data=data, shuffle=True, compression="gzip")
    elif style == "fletcher32":
        parent.create_dataset(name, data=data, fletcher32=True)
    else:
        parent.create_dataset(name, data=data, chunks=True)


def s_links(f: h5py.File, rng: np.random.Generator) -> None:
    targets = [*(o.name for o in _layer_groups(f)), *(d.name for d in _datasets(f))]
    if not targets:
        return s_attr_wrong(f, rng)
    name = _pick(rng, targets)
    other = _pick(rng, targets)
    style = _pick(rng, ["soft", "soft-dangling", "soft-cycle", "external", "external-self", "hard-dup",
                        "hard-root"])
    del f[name]
    if style == "soft":
        f[name] = h5py.SoftLink(other)
    elif style == "soft-dangling":
        f[name] = h5py.SoftLink("/nowhere/at/all")
    elif style == "soft-cycle":
        f[name] = h5py.SoftLink(name)
    elif style == "external":
        f[name] = h5py.ExternalLink("missing.h5", "/x")
    elif style == "external-self":
        f[name] = h5py.ExternalLink(f.filename, other)
    elif style == "hard-dup":
        if other in f:
            f[name] = f[other]
    else:
        f[name] = f["/"]


def s_members(f: h5py.File, rng: np.random.Generator) -> None:
    layers = f.get("layers")
    style = _pick(rng, ["delete-layer", "delete-layers", "extra-root", "extra-in-layer", "group-in-layer",
                        "rename", "dataset-as-layers", "layer-as-dataset", "extra-layer", "renumber",
                        "named-type"])
    groups = _layer_groups(f)
    if style == "delete-layer" and groups:
        del f[_pick(rng, groups).name]
    elif style == "delete-layers" and layers is not None:
        del f["layers"]
    elif style == "extra-root":
        f.create_group("extra")
    elif style == "extra-in-layer" and groups:
        _pick(rng, groups).create_dataset("extra", data=np.zeros(3))
    elif style == "group-in-layer" and groups:
        _pick(rng, groups).create_group("weight2")
    elif style == "rename" and groups:
        g = _pick(rng, groups)
        f.move(g.name, g.name + "x")
    elif style == "dataset-as-layers" and layers is not None:
        del f["layers"]
        f["layers"] = np.zeros(3)
    elif style == "layer-as-dataset" and groups:
        name = _pick(rng, groups).name
        del f[name]
        f[name] = np.zeros(3)
    elif style == "extra-layer" and layers is not None:
        g = layers.create_group(f"{len(layers):03d}")
        g.attrs["type"], g.attrs["index"] = "ReLU", len(layers) - 1
    elif style == "renumber" and groups:
        _set_attr(_pick(rng, groups), "index", np.int64(_pick(rng, [-1, 2**62, 10**9, 0])))
    elif style == "named-type" and "committed_type" not in f:
        f["committed_type"] = np.dtype("f8")
    else:
        f.create_dataset("stray", data=[1.0])


def _many_layers(path: Path, n: int, kind: str) -> None:
    """A file of ``n`` valid parameter-free layers (ReLU, Flatten or both), written with h5py's low-level API."""
    string = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["schema_version"], f.attrs["dtype"] = "lrp_ref", 1, "float64"
        layers = f.create_group("layers")
        scalar, integer = h5py.h5s.create(h5py.h5s.SCALAR), h5py.h5t.STD_I64LE
        text = h5py.h5t.py_create(string, logical=True)
        width = max(3, len(str(n - 1)))
        for i in range(n):
            t = kind if kind != "mixed" else ("ReLU", "Flatten")[i % 2]
            gid = h5py.h5g.create(layers.id, f"{i:0{width}d}".encode())
            h5py.h5a.create(gid, b"type", text, scalar).write(np.array(t.encode(), dtype=string))
            h5py.h5a.create(gid, b"index", integer, scalar).write(np.array(i, dtype=np.int64))


def _many_members(path: Path, style: str) -> None:
    """10,000 root attributes, layer attributes, root links or layer members; or 100,000 class names."""
    n = 10_000
    with h5py.File(path, "r+") as f:
        groups = _layer_groups(f)
        scalar, integer = h5py.h5s.create(h5py.h5s.SCALAR), h5py.h5t.STD_I64LE
        if style in ("root-attrs", "layer-attrs"):
            target = f.id if style == "root-attrs" or not groups else groups[0].id
            for i in range(n):
                h5py.h5a.create(target, f"a{i}".encode(), integer, scalar).write(np.array(i, dtype=np.int64))
        elif style == "root-links":
            for i in range(n):
                f[f"link{i}"] = h5py.SoftLink("/layers")
        elif style == "layer-members" and groups:
            for i in range(n):
                groups[0][f"m{i}"] = h5py.SoftLink("/layers")
        else:
            names = np.array([f"class {i}" for i in range(100_000)], dtype=h5py.string_dtype())
            _set_attr(f, "class_names", names)


def _expensive(case: Case, rng: np.random.Generator, base: bytes, folder: Path) -> Path:
    """The file of a 'many-layers' or 'many-members' case, built once per variant and folder, then copied."""
    if case.kind == "many-layers":
        n, kind = _pick(rng, [10_000, 20_000]), _pick(rng, ["ReLU", "mixed"])
        key, build = f"layers-{n}-{kind}", lambda p: _many_layers(p, n, kind)
    else:
        style = _pick(rng, ["root-attrs", "layer-attrs", "root-links", "layer-members", "class-names"])

        def build(p: Path) -> None:
            p.write_bytes(base)
            _many_members(p, style)
        key = f"members-{style}"  # on one base, whatever the case's: the variants stay few
    cached = folder / f"cache-{key}.h5"
    if not cached.exists():
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        build(tmp)
        os.replace(tmp, cached)  # atomic: a concurrent worker sees the whole file or none
    return cached


def s_type_swap(f: h5py.File, rng: np.random.Generator) -> None:
    groups = _layer_groups(f)
    if groups:
        g = _pick(rng, groups)
        _set_attr(g, "type", _pick(rng, ["Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU", "Flatten", "Dropout",
                                         "", "dense"]))


def s_synthetic(f: h5py.File, rng: np.random.Generator) -> None:
    """A random small chain written by lrp_ref.save, then one more random edit."""
    for name in list(f):
        del f[name]
    for key in list(f.attrs):
        del f.attrs[key]
    c, h = int(rng.integers(1, 4)), int(rng.integers(6, 12))
    k = int(rng.integers(1, 4))
    conv = Conv2d(rng.normal(size=(2, c, k, k)), rng.normal(size=2) if rng.random() < 0.5 else None,
                  stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)))
    model = Sequential([conv, ReLU(), MaxPool2d(2) if rng.random() < 0.5 else AvgPool2d(1)])
    shape = model.shapes((c, h, h))[-1]
    n_in = int(np.prod(shape))
    model = Sequential([*model.layers, Flatten(), Dense(rng.normal(size=(3, n_in)))],
                       {"input_shape": (c, h, h)} if rng.random() < 0.7 else {})
    if rng.random() < 0.3:
        model = model.astype("float32")
    lrp_ref.io.write_model(f, model)
    _pick(rng, [s_attr_wrong, s_hyper_extreme, s_dataset_replace, s_type_swap, s_metadata])(f, rng)


STRUCTURAL: dict[str, Callable[[h5py.File, np.random.Generator], None]] = {
    "attr-wrong": s_attr_wrong,
    "attr-delete": s_attr_delete,
    "attr-extra": s_attr_extra,
    "hyper-extreme": s_hyper_extreme,
    "metadata": s_metadata,
    "dataset-replace": s_dataset_replace,
    "dataset-huge": s_dataset_huge,
    "dataset-storage": s_dataset_storage,
    "links": s_links,
    "members": s_members,
    "many-layers": lambda f, rng: None,  # built whole by _expensive()
    "many-members": lambda f, rng: None,
    "type-swap": s_type_swap,
    "synthetic": s_synthetic,
}
#: Relative frequency of each structural kind (the expensive ones are rarer).
_WEIGHTS = {"many-layers": 0.25, "many-members": 0.25}


# ----------------------------------------------------------------------------- cases


def cases(seed: int, n: int, bases: Iterable[str]) -> list[Case]:
    """``n`` cases: half byte-level, half structural, every base and kind drawn at random from ``seed``."""
    names = sorted(bases)
    kinds = list(STRUCTURAL)
    weights = np.array([_WEIGHTS.get(k, 1.0) for k in kinds])
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0])
        base = _pick(rng, names)
        if rng.random() < 0.5:
            out.append(Case(seed, i, base, "bytes", str(rng.choice(BYTE_KINDS))))
        else:
            small = [b for b in names if b != "mnist_mlp"]  # h5py edits of the 2 MB MLP cost more than they give
            out.append(Case(seed, i, _pick(rng, small), "structure", str(rng.choice(kinds, p=weights / weights.sum()))))
    return out


def make_case(case: Case, bases: dict[str, bytes], extents: dict[str, list[tuple[int, int]]], folder: Path) -> Path:
    """Write the mutated file of ``case`` into ``folder`` and return its path (deterministic)."""
    rng = np.random.default_rng([case.seed, case.index, 1])
    path = folder / f"case-{case.seed}-{case.index:05d}.h5"
    data = bytearray(bases[case.base])
    if case.family == "bytes":
        meta = _complement(extents[case.base], len(data))
        path.write_bytes(bytes(_mutate_bytes(data, case.kind, rng, meta)))
        return path
    if case.kind in _WEIGHTS:
        shutil.copyfile(_expensive(case, rng, bases["tiny64"], folder), path)
    else:
        path.write_bytes(bytes(data))
    with h5py.File(path, "r+") as f:
        STRUCTURAL[case.kind](f, rng)
        if case.kind not in _WEIGHTS and rng.random() < 0.2:  # sometimes a second edit (not on 10,000 members)
            STRUCTURAL[str(rng.choice([k for k in STRUCTURAL if k not in _WEIGHTS]))](f, rng)
    return path


def _complement(extents: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Byte ranges [start, stop) not covered by ``extents`` (the HDF5 metadata)."""
    out, pos = [], 0
    for start, length in extents:
        if start > pos:
            out.append((pos, start))
        pos = max(pos, start + length)
    if pos < size:
        out.append((pos, size))
    return out


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Result:
    """The outcome of one case."""

    case: Case
    outcome: str
    detail: str
    seconds: float


def classify(exc: BaseException) -> tuple[str, str]:
    """(outcome, detail) of an exception raised by ``load``."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    if any(isinstance(x, MemoryError) for x in chain):
        return "memory", detail
    if isinstance(exc, ModelFormatError):
        return "ModelFormatError", detail
    if isinstance(exc, LrpRefError):
        return "other LrpRefError", detail
    where = traceback.extract_tb(exc.__traceback__)[-3:]
    return "unexpected", detail + " at " + " < ".join(f"{Path(fr.filename).name}:{fr.lineno}" for fr in where)


def _child(case: Case, bases: dict[str, bytes], extents: dict[str, list[tuple[int, int]]], folder: Path,
           loader: Callable[[Path], Any], wfd: int, memory: int) -> None:
    """Body of a forked child: build the case, signal 'G', load under RLIMIT_AS, write one JSON line."""
    code = 0
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            path = make_case(case, bases, extents, folder)
        except Exception as exc:  # a generator problem, not a loader one
            os.write(wfd, b"G" + json.dumps({"outcome": "generator", "detail": repr(exc)[:300]}).encode())
            return
        os.write(wfd, b"G")
        faulthandler.register(signal.SIGUSR1, file=wfd, all_threads=False)  # where a hang is, for the report
        # A Python-level handler runs only between bytecodes: it answers while Python code loops, not
        # while one call into libhdf5 never returns. That tells a hang of the loader from one of libhdf5.
        signal.signal(signal.SIGUSR2, lambda *_: os.write(wfd, b"P"))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        try:
            loader(path)
            outcome, detail = "loaded", ""
        except BaseException as exc:
            outcome, detail = classify(exc)
        os.write(wfd, json.dumps({"outcome": outcome, "detail": detail}).encode())
    except BaseException:
        code = 3
    finally:
        os._exit(code)


def run(case_list: list[Case], bases: dict[str, bytes], folder: Path, *, workers: int = 2, timeout: float = 5.0,
        memory: int = 2 * 2**30, loader: Callable[[Path], Any] = lrp_ref.load,
        keep: Path | None = None, progress: Callable[[int, int], None] | None = None) -> list[Result]:
    """Run every case in a forked child, at most ``workers`` at a time; returns the results in case order.

    ``timeout`` bounds the load (the file is built first, with up to 120 s of its own),
    ``memory`` is the child's ``RLIMIT_AS`` in bytes.  Files of bad outcomes are moved
    to ``keep`` if given, every other file is deleted.
    """
    extents = {}
    for name, data in bases.items():
        tmp = folder / f"extent-{name}.h5"
        tmp.write_bytes(data)
        extents[name] = data_extents(tmp)
        tmp.unlink()
    todo = list(reversed(case_list))
    running: dict[int, dict[str, Any]] = {}  # read fd -> state
    results: dict[int, Result] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    while todo or running:
        while todo and len(running) < workers:
            case = todo.pop()
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                os.close(rfd)
                _child(case, bases, extents, folder, loader, wfd, memory)
            os.close(wfd)
            running[rfd] = {"pid": pid, "case": case, "buf": b"", "start": time.monotonic(), "loading": None}
        now = time.monotonic()
        deadlines = [s["loading"] + timeout if s["loading"] else s["start"] + 120.0 for s in running.values()]
        ready, _, _ = select.select(list(running), [], [], max(0.0, min(deadlines) - now))
        for rfd in ready:
            state = running[rfd]
            chunk = os.read(rfd, 65536)
            if chunk:
                if state["loading"] is None and chunk.startswith(b"G"):
                    state["loading"], chunk = time.monotonic(), chunk[1:]
                state["buf"] += chunk
                continue
            _, status, _ = os.wait4(state["pid"], 0)
            os.close(rfd)
            del running[rfd]
            seconds = time.monotonic() - (state["loading"] or state["start"])
            if os.WIFSIGNALED(status):
                outcome, detail = "crash", signal.Signals(os.WTERMSIG(status)).name
            elif state["buf"]:
                reply = json.loads(state["buf"])
                outcome, detail = reply["outcome"], reply["detail"]
            else:
                outcome, detail = "unexpected", f"child exited with status {os.WEXITSTATUS(status)} and no report"
            results[state["case"].index] = _finish(state["case"], outcome, detail, seconds, folder, keep)
        now = time.monotonic()
        for rfd, state in list(running.items()):
            limit = state["loading"] + timeout if state["loading"] else state["start"] + 120.0
            if now >= limit:
                before = len(state["buf"])
                os.kill(state["pid"], signal.SIGUSR2)  # does Python code still run?
                time.sleep(0.5)
                while select.select([rfd], [], [], 0)[0] and (chunk := os.read(rfd, 65536)):
                    state["buf"] += chunk
                in_python = b"P" in state["buf"][before:]
                os.kill(state["pid"], signal.SIGUSR1)  # the child's faulthandler writes its Python stack
                time.sleep(0.2)
                os.kill(state["pid"], signal.SIGKILL)
                os.wait4(state["pid"], 0)
                while chunk := os.read(rfd, 65536):
                    state["buf"] += chunk
                os.close(rfd)
                del running[rfd]
                stack = state["buf"].decode(errors="replace")
                what = f"killed after {timeout:g} s" if state["loading"] else "generator took over 120 s"
                what += f" in {_innermost(stack)}"
                outcome = ("hang" if in_python else "libhdf5 hang") if state["loading"] else "generator"
                results[state["case"].index] = _finish(state["case"], outcome, what, now - state["start"], folder, keep)
        if progress:
            progress(len(results), len(case_list))
    return [results[c.index] for c in case_list]


def _frames(stack: str) -> list[str]:
    return [line.strip() for line in stack.splitlines() if line.strip().startswith("File ")]


def _innermost(stack: str) -> str:
    """'file:line (function)' of the innermost Python frame in a faulthandler dump, and the lrp_ref frame under it."""
    frames = _frames(stack)
    if not frames:
        return "an unknown place"

    def short(frame: str) -> str:
        parts = frame.split('"')
        rest = parts[2].strip().removeprefix(",").strip() if len(parts) > 2 else ""
        return f"{'/'.join(Path(parts[1]).parts[-2:])} {rest}" if len(parts) > 1 else frame
    ours = next((f for f in frames if "lrp_ref" in f), None)
    return short(frames[0]) + (f" < {short(ours)}" if ours and ours != frames[0] else "")


def _finish(case: Case, outcome: str, detail: str, seconds: float, folder: Path, keep: Path | None) -> Result:
    path = folder / f"case-{case.seed}-{case.index:05d}.h5"
    if keep is not None and outcome in (*BAD, *CONTAINED) and path.exists():
        keep.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), keep / path.name)
    else:
        path.unlink(missing_ok=True)
    for extra in (path.with_suffix(".bin"),):
        extra.unlink(missing_ok=True)
    return Result(case, outcome, detail, seconds)


def check_contained(results: list[Result], bases: dict[str, bytes], folder: Path, timeout: float = 5.0
                    ) -> list[tuple[Result, str]]:
    """Rebuild every crash and libhdf5 hang and read it with ``load(path, untrusted=True)``.

    Returns ``(result, what happened)`` for each; the containment holds when every
    ``what`` starts with ``ModelFormatError``.  The wall-clock limit of the child is
    ``timeout`` (``check_file``'s), then the parent loads the file only if the child
    could.
    """
    extents = {}
    for name, data in bases.items():
        tmp = folder / f"extent-{name}.h5"
        tmp.write_bytes(data)
        extents[name] = data_extents(tmp)
        tmp.unlink()
    out = []
    for r in results:
        if r.outcome not in CONTAINED:
            continue
        path = make_case(r.case, bases, extents, folder)
        try:
            lrp_ref.io.check_file(path, timeout=timeout)
            lrp_ref.load(path, untrusted=True)
            what = "loaded (not contained: the child read it without trouble)"
        except ModelFormatError as exc:
            what = f"ModelFormatError: {' '.join(str(exc).split())[:200]}"
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
        finally:
            path.unlink(missing_ok=True)
        out.append((r, what))
    return out


# ----------------------------------------------------------------------------- report


def counts(results: list[Result]) -> Counter[str]:
    found = Counter(r.outcome for r in results)
    return Counter({k: found.get(k, 0) for k in (*OUTCOMES, *sorted(set(found) - set(OUTCOMES)))})


def report(results: list[Result], seconds: float | None = None) -> str:
    """The counts per outcome, per family, and the distinct bad outcomes with an example each."""
    lines = []
    total = counts(results)
    families = sorted({r.case.family for r in results})
    lines.append(f"{'outcome':<20}{'total':>8}" + "".join(f"{f:>11}" for f in families))
    for outcome, n in total.items():
        per = [sum(1 for r in results if r.outcome == outcome and r.case.family == f) for f in families]
        lines.append(f"{outcome:<20}{n:>8}" + "".join(f"{p:>11}" for p in per))
    lines.append(f"{'all':<20}{len(results):>8}")
    slow = max(results, key=lambda r: r.seconds) if results else None
    if slow is not None:
        lines.append(f"slowest case: {slow.seconds:.2f} s ({slow.case.base}, {slow.case.kind}, index {slow.case.index},"
                     f" {slow.outcome})")
    if seconds is not None:
        lines.append(f"wall time: {seconds:.1f} s")
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        if r.outcome in (*BAD, *CONTAINED, "generator"):
            key = (r.outcome, r.case.kind, r.detail.split(":")[0] if r.outcome == "unexpected" else r.detail[:60])
            groups.setdefault(key, []).append(r)
    if groups:
        lines.append("bad outcomes (outcome, mutation, what; count; an example case):")
        for (outcome, kind, what), rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            ex = rs[0]
            lines.append(f"  {outcome:<10} {kind:<16} {len(rs):>5}  {what}  [seed {ex.case.seed} index "
                         f"{ex.case.index} base {ex.case.base}] {ex.detail[:160]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="number of mutated files (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock limit of one load, seconds")
    parser.add_argument("--memory", type=float, default=2.0, help="address-space limit of one load, GiB")
    parser.add_argument("--keep", type=Path, help="move the files of bad outcomes into this folder")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lrp-fuzz-") as tmp:
        folder = Path(tmp)
        bases = base_files(folder)
        case_list = cases(args.seed, args.cases, bases)

        shown = [-1]

        def progress(done: int, total: int) -> None:
            if done != shown[0] and (done % 500 == 0 or done == total):
                shown[0] = done
                sys.stderr.write(f"\r{done}/{total} cases, {time.monotonic() - start:.0f} s")
                sys.stderr.flush()

        results = run(case_list, bases, folder, workers=args.workers, timeout=args.timeout,
                      memory=int(args.memory * 2**30), keep=args.keep, progress=progress)
        sys.stderr.write("\n")
        seconds = time.monotonic() - start
        contained = check_contained(results, bases, folder, args.timeout)
    sys.stdout.write(f"fuzzing lrp_ref.io.load: {args.cases} cases, seed {args.seed}, {args.workers} workers, "
                     f"{args.timeout:g} s and {args.memory:g} GiB per load\n")
    sys.stdout.write(report(results, seconds) + "\n")
    if contained:
        ok = sum(what.startswith("ModelFormatError") for _, what in contained)
        sys.stdout.write(f"crashes and libhdf5 hangs read with load(untrusted=True): {ok} of {len(contained)} "
                         "refused with a ModelFormatError\n")
        for r, what in contained:
            sys.stdout.write(f"  {r.outcome:<13} seed {r.case.seed} index {r.case.index} ({r.case.base}, "
                             f"{r.case.kind}): {what[:150]}\n")
    if args.json:
        args.json.write_text(json.dumps([{**r.case.__dict__, "outcome": r.outcome, "detail": r.detail,
                                          "seconds": r.seconds} for r in results], indent=1))
    escaped = any(not what.startswith("ModelFormatError") for _, what in contained)
    return 1 if escaped or any(r.outcome in BAD for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
