"""Storage for :func:`lrp_ref.dataset.explain_dataset`: sources, part files, checksums, the assembled output.

Private.  The layout of the files is documented in ``docs/dataset.md``.

A run writes chunk ``i`` of the dataset to ``OUT.parts/part-00000i.h5``: first
to ``part-00000i.h5.tmp``, renamed only once the file is complete and closed.
A part that exists is therefore whole, whatever killed the run; its
attributes carry the run's identity and two SHA-256 checksums (of the input
rows it explained, of the arrays it holds), so that a resumed run verifies it
instead of recomputing it.  The output file is assembled from the parts the
same way (``OUT.tmp``, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError, ShapeError

Array = NDArray[Any]

#: value of the root attribute ``format`` of an output file
FORMAT = "lrp_ref.dataset"
#: version of the layout in docs/dataset.md
FORMAT_VERSION = 1
#: gzip (deflate) level: HDF5's built-in filter, so every HDF5 library reads the output without a plugin.
#: Level 1 with the shuffle filter: within 1% of level 4's size on MNIST relevance, at two thirds of its time
GZIP_LEVEL = 1
#: target size of one stored (compressed) HDF5 chunk of the relevance dataset
STORAGE_CHUNK_BYTES = 1 << 20

#: per-sample arrays besides the relevance, in the order they are hashed: name -> per-sample shape role
PER_SAMPLE = ("target", "score", "relevance_sum", "output", "absorbed", "residual", "scale")

# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceSpec:
    """Where an array lives, as plain values that can travel to another process.

    ``kind`` is ``"h5"`` (``path`` and ``name`` of a dataset), ``"npy"`` (a
    ``.npy`` file, memory-mapped) or ``"array"`` (an in-memory array-like,
    held in ``array``: it cannot travel).
    """

    kind: str
    path: str = ""
    name: str = ""
    array: Any = None

    def describe(self) -> str:
        if self.kind == "h5":
            return f"{self.path}:{self.name}"
        if self.kind == "npy":
            return self.path
        return "an in-memory array"

    def to_json(self) -> dict[str, str]:
        if self.kind == "array":
            raise ArgumentError("an in-memory array cannot be sent to Dask workers; write it to an HDF5 or .npy file "
                                "(np.save(path, a)) and pass 'file.h5:dataset' or 'file.npy'")
        return {"kind": self.kind, "path": self.path, "name": self.name}

    @classmethod
    def from_json(cls, d: Mapping[str, str]) -> SourceSpec:
        return cls(d["kind"], d["path"], d["name"])


def source_spec(source: Any, what: str) -> SourceSpec:
    """A :class:`SourceSpec` for ``source``: an h5py.Dataset, ``"file.h5:path"``, ``"file.npy"`` or an array-like."""
    if isinstance(source, h5py.Dataset):
        return SourceSpec("h5", str(Path(source.file.filename).resolve()), source.name)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.endswith(".npy") and Path(text).is_file():
            return SourceSpec("npy", str(Path(text).resolve()))
        path, sep, name = text.rpartition(":")
        if not sep or not path or not name:
            raise ArgumentError(f"{what} {text!r}: expected 'file.h5:dataset/path' (an HDF5 file and the dataset in "
                                "it), a .npy file, an h5py.Dataset or an array")
        if not Path(path).is_file():
            raise ArgumentError(f"{what} {text!r}: no such file {path!r}")
        return SourceSpec("h5", str(Path(path).resolve()), "/" + name.lstrip("/"))
    if isinstance(source, np.ndarray) or (hasattr(source, "shape") and hasattr(source, "__getitem__")):
        return SourceSpec("array", array=source)
    raise ArgumentError(f"{what} must be an HDF5 dataset (h5py.Dataset or 'file.h5:dataset'), a .npy file or an "
                        f"array; got {type(source).__name__}")


@contextmanager
def open_source(spec: SourceSpec, what: str) -> Iterator[Any]:
    """An object with ``shape``, ``dtype`` and slicing along the first axis, open for the block's duration."""
    if spec.kind == "array":
        yield spec.array
        return
    if spec.kind == "npy":
        yield np.load(spec.path, mmap_mode="r", allow_pickle=False)
        return
    try:
        f = h5py.File(spec.path, "r")
    except OSError as exc:
        raise ArgumentError(f"{what} {spec.describe()}: cannot open the HDF5 file ({exc})") from None
    with f:
        ds = f.get(spec.name)
        if not isinstance(ds, h5py.Dataset):
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise ArgumentError(f"{what} {spec.describe()}: no dataset {spec.name!r} in the file; its datasets: "
                                f"{', '.join(names[:20]) or 'none'}")
        yield ds


def read_rows(source: Any, start: int, stop: int, what: str) -> Array:
    """Rows ``start:stop`` of ``source`` as a C-contiguous array of real numbers."""
    rows = np.ascontiguousarray(np.asarray(source[start:stop]))
    if rows.dtype.kind not in "biuf":
        raise ArgumentError(f"{what} holds {rows.dtype} values; expected real numbers (bool, int or float)")
    if rows.shape[0] != stop - start:
        raise ShapeError(f"{what}: rows {start}..{stop - 1} gave {rows.shape[0]} rows (did the source shrink?)")
    return rows


# ----------------------------------------------------------------------------- checksums


def sha256_arrays(arrays: Mapping[str, Array]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` in the mapping's order."""
    h = hashlib.sha256()
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical(identity: Mapping[str, Any]) -> str:
    """The identity of a run as one JSON string (sorted keys): what parts and outputs are compared on."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def differences(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """'key: found X, this run Y; ...' for the keys on which two identities differ."""
    keys = sorted(set(found) | set(wanted))
    return "; ".join(f"{k}: recorded {found.get(k)!r}, this run {wanted.get(k)!r}"
                     for k in keys if found.get(k) != wanted.get(k))


# ----------------------------------------------------------------------------- layout


def storage_rows(chunk_size: int, sample_bytes: int) -> int:
    """Rows per stored HDF5 chunk of the relevance: about 1 MiB, and a divisor of ``chunk_size``.

    A divisor, so that the stored chunks of every part line up with those of the output.
    """
    limit = max(1, STORAGE_CHUNK_BYTES // max(sample_bytes, 1))
    return max(d for d in range(1, min(limit, chunk_size) + 1) if chunk_size % d == 0)


def _create(f: h5py.File, name: str, shape: tuple[int, ...], dtype: Any, rows: int | None) -> h5py.Dataset:
    if rows is None or math.prod(shape) == 0:
        return f.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
    return f.create_dataset(name, shape=shape, dtype=dtype, chunks=(min(rows, shape[0]), *shape[1:]),
                            compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True, track_times=False)


def part_path(parts: Path, i: int) -> Path:
    return parts / f"part-{i:06d}.h5"


def deflate(a: Array, rows: int) -> list[bytes]:
    """The stored chunks of ``a`` (``rows`` rows each) through HDF5's shuffle and deflate filters, done here.

    Shuffle stores byte 0 of every element, then byte 1, ...; deflate is zlib's ``compress`` at
    :data:`GZIP_LEVEL` (what HDF5's filter calls).  Here rather than in HDF5 because zlib and NumPy release
    the GIL: a chunk's part is compressed while the next chunk is explained.  The last chunk is padded
    with zeros to full size, as HDF5 stores edge chunks.
    """
    chunks = []
    for r in range(0, len(a), rows):
        block = a[r:r + rows]
        if len(block) < rows:
            block = np.concatenate([block, np.zeros((rows - len(block), *a.shape[1:]), a.dtype)])
        shuffled = np.ascontiguousarray(block).view(np.uint8).reshape(-1, a.dtype.itemsize).T.tobytes()
        chunks.append(zlib.compress(shuffled, GZIP_LEVEL))
    return chunks


def write_part(parts: Path, i: int, arrays: Mapping[str, Array], attrs: Mapping[str, Any], rows: int) -> None:
    """Write chunk ``i``'s arrays to its part file: a temporary name first, renamed once complete."""
    final = part_path(parts, i)
    tmp = final.with_name(final.name + ".tmp")
    relevance = arrays["relevance"]
    rows = min(rows, len(relevance))
    compressed = deflate(relevance, rows)
    with h5py.File(tmp, "w") as f:
        ds = _create(f, "relevance", relevance.shape, relevance.dtype, rows)
        tail = (0,) * (relevance.ndim - 1)
        for k, data in enumerate(compressed):
            ds.id.write_direct_chunk((k * rows, *tail), data, 0)
        for name, a in arrays.items():
            if name != "relevance":
                _create(f, name, a.shape, a.dtype, None)[...] = a
        for key, value in attrs.items():
            f.attrs[key] = value
    os.replace(tmp, final)


def read_part(path: Path) -> tuple[dict[str, Array], dict[str, Any]]:
    """A part file's arrays (in hashing order) and attributes."""
    with h5py.File(path, "r") as f:
        return {name: f[name][...] for name in ("relevance", *PER_SAMPLE)}, attributes(f)


def attributes(f: h5py.File) -> dict[str, Any]:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def copy_into(out: h5py.Dataset, part: h5py.Dataset, start: int) -> None:
    """Rows of ``part`` into ``out`` from row ``start``: stored chunks copied as they are (no recompression)
    when both datasets have the same chunk shape and ``start`` is a chunk boundary, else read and written."""
    rows = part.chunks[0] if part.chunks else 0
    if part.chunks != out.chunks or not rows or start % rows:
        out[start:start + part.shape[0]] = part[...]
        return
    tail = (0,) * (part.ndim - 1)
    for r in range(0, part.shape[0], rows):
        mask, data = part.id.read_direct_chunk((r, *tail))
        out.id.write_direct_chunk((start + r, *tail), data, mask)


def create_output(path: Path, n: int, sample_shape: tuple[int, ...], dtype: Any, n_outputs: int,
                  n_layers: int, rows: int) -> h5py.File:
    """An output file (opened for writing) with every dataset of the layout, sized for ``n`` samples."""
    f = h5py.File(path, "w")
    _create(f, "relevance", (n, *sample_shape), dtype, rows)
    _create(f, "target", (n,), np.int64, None)
    for name in ("score", "relevance_sum"):
        _create(f, name, (n,), dtype, None)
    _create(f, "output", (n, n_outputs), dtype, None)
    for name in ("absorbed", "residual", "scale"):
        _create(f, name, (n, n_layers), dtype, None)
    return f
