"""The work of :func:`lrp_ref.dataset.explain_dataset`: explaining a chunk, verifying parts, assembling the output.

Private; see :mod:`lrp_ref.dataset` for how a run goes and ``docs/dataset.md`` for the files.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import _dataset_store as store
from .composites import Composite
from .errors import ArgumentError, LrpRefError, ShapeError
from .explain import explain
from .graph import Graph
from .ledger import default_rtol
from .profiles import Profile
from .rules import Rule

Array = NDArray[Any]


# ----------------------------------------------------------------------------- progress


class Progress:
    """``label [#####.......] done/total samples  elapsed  ETA  rate`` on stderr.

    The style of the command line's bar, with an ETA from this call's own rate
    (chunks verified from an earlier run count as done, not towards the rate).
    Redrawn in place on a terminal; otherwise a line every 30 s and at the end.
    """

    def __init__(self, total: int, done: int, enabled: bool, label: str = "explain-dataset") -> None:
        self.total, self.done, self.base, self.enabled, self.label = total, done, done, enabled, label
        self.start = self.last = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def add(self, n: int, what: str) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        final = self.done >= self.total
        if not (self.tty or final or now - self.last >= 30):
            return
        self.last = now
        elapsed = now - self.start
        rate = (self.done - self.base) / elapsed if elapsed > 0 else 0.0
        eta = f"ETA {(self.total - self.done) / rate:6.1f}s" if rate > 0 and not final else " " * 10
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:6.1f}s {eta} {rate:7.0f}/s {what}")
        end = "\n" if final or not self.tty else ""
        print(f"\r{line[:110]:<110}" if self.tty else line, end=end, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- what a chunk needs


@dataclass(frozen=True)
class Work:
    """Live objects for explaining chunks: built by the driver, or by a worker from the job's plain values."""

    model: Graph
    rules: Rule | Composite | Sequence[Rule | None]
    profile: str | Profile
    source: Any  # an open source (h5py.Dataset, memmap, array)
    target: Any  # None, an int, or an open source of targets
    raw: bool
    batch_size: int
    chunk_size: int
    n: int
    identity: str  # canonical JSON

    def span(self, i: int) -> tuple[int, int]:
        return i * self.chunk_size, min((i + 1) * self.chunk_size, self.n)

    def inputs(self, i: int) -> tuple[Array, Array | None, str]:
        """Chunk ``i``'s source rows, its target rows (if given per sample), and their SHA-256."""
        start, stop = self.span(i)
        rows = store.read_rows(self.source, start, stop, f"source rows {start}..{stop - 1}")
        arrays = {"x": rows}
        t = None
        if self.target is not None and not isinstance(self.target, int):
            t = store.read_rows(self.target, start, stop, f"target rows {start}..{stop - 1}")
            arrays["target"] = t
        return rows, t, store.sha256_arrays(arrays)

    def compute(self, i: int, on_batch: Callable[[int], None] = lambda n: None) -> tuple[dict[str, Array], str]:
        """Chunk ``i`` explained: its arrays (in hashing order) and the SHA-256 of its input rows."""
        rows, t, input_sha = self.inputs(i)
        start, _ = self.span(i)
        x = model_input(rows, self.model, start) if self.raw else rows
        parts: dict[str, list[Array]] = {name: [] for name in ("relevance", *store.PER_SAMPLE)}
        for b in range(0, len(x), self.batch_size):
            xb = x[b:b + self.batch_size]
            target = t[b:b + self.batch_size] if t is not None else self.target
            try:
                e = explain(self.model, xb, self.rules, target=target, profile=self.profile)
            except LrpRefError as exc:  # say which samples
                raise type(exc)(f"samples {start + b}..{start + b + len(xb) - 1} (chunk {i}): {exc}") from None
            assert e.target is not None
            entries = e.ledger.entries
            for name, value in (("relevance", e.relevance), ("target", e.target.astype(np.int64)),
                                ("score", e.score), ("relevance_sum", e.ledger.input_relevance),
                                ("output", e.output),
                                ("absorbed", np.stack([b.absorbed for b in entries], axis=1)),
                                ("residual", np.stack([b.residual for b in entries], axis=1)),
                                ("scale", np.stack([b.scale for b in entries], axis=1))):
                parts[name].append(value)
            on_batch(len(xb))
        arrays = {name: np.ascontiguousarray(np.concatenate(v)) for name, v in parts.items()}
        arrays["target"] = arrays["target"].astype(np.int64)
        return arrays, input_sha

    def write(self, parts: Path, i: int, on_batch: Callable[[int], None] = lambda n: None) -> None:
        """Chunk ``i`` explained and written to its part file."""
        self.finish(parts, i, *self.compute(i, on_batch))

    def finish(self, parts: Path, i: int, arrays: dict[str, Array], input_sha: str) -> None:
        """Chunk ``i``'s arrays checksummed, compressed and written to its part file."""
        start, stop = self.span(i)
        attrs = {"identity": self.identity, "chunk": i, "start": start, "stop": stop, "input_sha256": input_sha,
                 "output_sha256": store.sha256_arrays(arrays)}
        rows = store.storage_rows(self.chunk_size, arrays["relevance"][0].nbytes)
        store.write_part(parts, i, arrays, attrs, rows)


def model_input(rows: Array, model: Graph, start: int) -> Array:
    """Raw values (e.g. pixels 0..255) as model inputs: reshaped to the model's input shape, then
    ``raw * input_scale + input_offset``; values outside the raw range of ``input_low..input_high`` are refused."""
    meta = model.metadata
    shape = tuple(int(s) for s in meta["input_shape"])
    n = rows.shape[0]
    if rows.shape[1:] not in (shape, shape[1:] if len(shape) == 3 and shape[0] == 1 else shape, (math.prod(shape),)):
        raise ShapeError(f"raw source rows have shape {rows.shape[1:]} per sample; the model takes {shape} "
                         f"(also accepted: {shape[1:]} for one channel, or {(math.prod(shape),)} flat)")

    def per_channel(value: Any) -> Array:
        arr = np.asarray(value, dtype=np.float64)
        return arr[:, None, None] if arr.ndim == 1 else arr

    x = rows.reshape(n, *shape).astype(np.float64) * per_channel(meta.get("input_scale", 1.0)) \
        + per_channel(meta.get("input_offset", 0.0))
    if "input_low" in meta and "input_high" in meta:
        outside = (x < per_channel(meta["input_low"])) | (x > per_channel(meta["input_high"]))
        if np.any(outside):
            raise ArgumentError(f"source rows {start}..{start + n - 1}: {int(np.count_nonzero(outside))} value(s) lie "
                                f"outside the model's raw range (found {float(rows.min()):.6g}..{float(rows.max()):.6g}"
                                "); pass raw=False if the source holds model inputs")
    return x


# ----------------------------------------------------------------------------- parts and output


def verify_part(path: Path, i: int, identity: dict[str, Any], work: Work) -> bool:
    """True if part ``i`` is sound and belongs to this run; False if damaged (to recompute); raises if foreign."""
    try:
        arrays, attrs = store.read_part(path)
    except (OSError, KeyError, ValueError, RuntimeError):
        return False
    found = json.loads(str(attrs.get("identity", "{}")))
    if found != identity:
        raise ArgumentError(f"{path} was written by a different run ({store.differences(found, identity)}); "
                            "pass overwrite=True to start again")
    if store.sha256_arrays(arrays) != attrs.get("output_sha256") or int(attrs.get("chunk", -1)) != i:
        return False
    _, _, input_sha = work.inputs(i)
    if input_sha != attrs.get("input_sha256"):
        start, stop = work.span(i)
        raise ArgumentError(f"the source rows {start}..{stop - 1} (or their targets) differ from those chunk {i} "
                            f"explained in {path}: the source changed since the interrupted run; pass "
                            "overwrite=True to start again")
    return True


def prepare_parts(parts: Path, identity: dict[str, Any], work: Work, n_chunks: int, overwrite: bool) -> set[int]:
    """The parts folder, ready for this run; returns the chunks already done (verified)."""
    manifest = parts / "run.json"
    if parts.exists() and (overwrite or (not manifest.exists() and not any(parts.glob("part-*")))):
        shutil.rmtree(parts)  # replaced; or killed before its run.json was written (nothing in it yet)
    if parts.exists():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ArgumentError(f"{parts} exists but has no readable run.json: not the parts of an explain_dataset "
                                "run; remove it or pass overwrite=True") from None
        if found != identity:
            raise ArgumentError(f"{parts} holds the parts of a different run ({store.differences(found, identity)}); "
                                "pass overwrite=True to discard them, or use another output path")
    else:
        parts.mkdir(parents=True)
        tmp = parts / "run.json.tmp"
        tmp.write_text(json.dumps(identity, sort_keys=True, indent=1), encoding="utf-8")
        tmp.replace(manifest)
    for stale in parts.glob("*.tmp"):  # a part being written when the run was killed
        stale.unlink()
    done = set()
    for i in range(n_chunks):
        path = store.part_path(parts, i)
        if path.exists():
            if verify_part(path, i, identity, work):
                done.add(i)
            else:
                # a warning, not a print: the caller can log, filter or turn it into an error
                warnings.warn(f"explain_dataset: {path} is damaged; chunk {i} is recomputed", RuntimeWarning,
                              stacklevel=2)
                path.unlink()
    return done


def read_identity(f: h5py.File) -> dict[str, Any] | None:
    if f.attrs.get("format") != store.FORMAT:
        return None
    try:
        found = json.loads(str(f.attrs["identity"]))
    except (KeyError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def check_existing_output(out: Path, identity: dict[str, Any], work: Work, n_chunks: int, overwrite: bool) -> bool:
    """True if ``out`` is this run's finished output (verified chunk by chunk); removes it under ``overwrite``."""
    try:
        with h5py.File(out, "r") as f:
            found = read_identity(f)
    except OSError:
        found = None
    if found != identity:
        if overwrite:
            out.unlink()
            return False
        what = "is not an explain_dataset output" if found is None else \
            f"holds a different run ({store.differences(found, identity)})"
        raise ArgumentError(f"{out} exists and {what}; pass overwrite=True to replace it, or choose another path")
    with h5py.File(out, "r") as f:
        for i in range(n_chunks):
            start, stop = work.span(i)
            arrays = {name: f[name][start:stop] for name in ("relevance", *store.PER_SAMPLE)}
            _, _, input_sha = work.inputs(i)
            if store.sha256_arrays(arrays) != f["chunk_output_sha256"][i].decode() or \
                    input_sha != f["chunk_input_sha256"][i].decode():
                raise ArgumentError(f"{out} is this run's output, but chunk {i} (samples {start}..{stop - 1}) does "
                                    "not match its checksums (the file or the source changed); pass overwrite=True "
                                    "to recompute")
    return True


def assemble(out: Path, parts: Path, identity: dict[str, Any], info: dict[str, Any], work: Work, n_chunks: int,
              n_outputs: int, n_layers: int) -> None:
    """Copy the parts, in order and one at a time, into ``out`` (written as ``out.tmp``, renamed when complete)."""
    tmp = out.with_name(out.name + ".tmp")
    dt = np.dtype(identity["dtype"])
    rows = store.storage_rows(work.chunk_size, math.prod(identity["sample_shape"]) * dt.itemsize)
    rtol = default_rtol(dt)
    worst, unbalanced, share = 0.0, 0, 0.0
    input_sha, output_sha = [], []
    with store.create_output(tmp, work.n, tuple(identity["sample_shape"]), dt, n_outputs, n_layers, rows) as f:
        for i in range(n_chunks):
            # parts were verified when found, or just written from the arrays their checksum was taken of:
            # the relevance's compressed chunks are copied as they are, not decompressed and hashed again
            with h5py.File(store.part_path(parts, i), "r") as part:
                start, stop = work.span(i)
                store.copy_into(f["relevance"], part["relevance"], start)
                arrays = {name: part[name][...] for name in store.PER_SAMPLE}
                attrs = store.attributes(part)
            for name in store.PER_SAMPLE:
                f[name][start:stop] = arrays[name]
            ratio = np.abs(arrays["residual"]) / np.maximum(arrays["scale"], np.finfo(dt).tiny)
            worst = max(worst, float(ratio.max(initial=0.0)))
            unbalanced += int(np.count_nonzero(np.any(ratio > rtol, axis=1)))
            share += float(np.sum(np.abs(arrays["absorbed"].sum(axis=1)) /
                                  np.maximum(np.abs(arrays["score"]), np.finfo(dt).tiny)))
            input_sha.append(attrs["input_sha256"])
            output_sha.append(attrs["output_sha256"])
        text = h5py.string_dtype()
        starts = [work.span(i)[0] for i in range(n_chunks)]
        for name, values, kind in (("chunk_start", starts, np.int64), ("chunk_input_sha256", input_sha, text),
                                   ("chunk_output_sha256", output_sha, text), ("layers", info["layers"], text),
                                   ("layer_rules", identity["layer_rules"], text)):
            f.create_dataset(name, data=np.array(values, dtype=kind), track_times=False)
        attrs_out = {
            "format": store.FORMAT, "format_version": store.FORMAT_VERSION, "identity": store.canonical(identity),
            "lrp_ref_version": identity["lrp_ref_version"], "model_sha256": identity["model_sha256"],
            "model": info["model"], "rules": info["rules"], "profile": identity["profile"], "dtype": dt.name,
            "batch_size": work.batch_size, "chunk_size": work.chunk_size, "n_samples": work.n,
            "source": info["source"], "raw": identity["raw"], "target": str(identity["target"]),
            "compression": info["compression"], "ledger_rtol": rtol, "ledger_max_residual": worst,
            "ledger_unbalanced": unbalanced, "absorbed_share": share / work.n,
        }
        for key, value in attrs_out.items():
            f.attrs[key] = value
    tmp.replace(out)


