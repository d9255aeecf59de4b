"""explain_dataset(): explain a whole dataset into one HDF5 file, chunk by chunk, resumable, optionally on Dask.

The dataset is cut into chunks of ``chunk_size`` samples.  Chunk ``i`` is read
from the source, explained in batches of ``batch_size`` with
:func:`lrp_ref.explain`, and written to its own part file
``OUT.parts/part-00000i.h5`` (under a temporary name, renamed when complete).
When every chunk has its part, the output ``OUT`` is assembled from the parts
(again under a temporary name) and the parts are removed.  Only one chunk is
in memory at a time, so memory does not grow with the dataset.

*Resuming.*  Run the same call again after an interruption: parts that exist
are verified (the run's identity, a SHA-256 of the arrays they hold, a SHA-256
of the input rows they explained, re-read from the source) and kept; only the
missing chunks are computed.  A part or output made by a different run (other
model, rules, profile, dtype, batching, source shape or source values) is
refused with the differences listed, unless ``overwrite=True``.

*Dask.*  With ``client=dask.distributed.Client(...)`` (the optional ``dask``
extra) each missing chunk is one task.  Only plain values travel: the model's
path and checksum, the rule specification, the source's path, the chunk
index.  Each worker loads the model from its file, reads its rows, and writes
its part file next to the output; the driver assembles.  Workers and driver
must therefore see the same paths (one machine, or a shared filesystem).

The output layout is specified in ``docs/dataset.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import shutil
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import _dataset_run as run
from . import _dataset_store as store
from . import catalog, io
from ._checks import check_dtype
from .composites import Composite, resolve_rules
from .errors import ArgumentError, ShapeError, TargetError
from .graph import Graph
from .profiles import PROFILES, Profile, get_profile
from .rules import Rule

__all__ = ["DatasetSummary", "explain_dataset"]

Array = NDArray[Any]
Rules = Rule | Composite | Sequence[Rule | None] | str


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`explain_dataset` did.

    Attributes
    ----------
    path : Path
        The output file.
    n_samples, n_chunks : int
    computed : tuple of int
        Chunks explained by this call.
    reused : tuple of int
        Chunks found finished (by an earlier, interrupted call), verified and kept.
    seconds : float
        Wall time of this call.
    max_residual : float
        Largest relative ledger residual ``|R_out - R_in - absorbed| / scale``
        over every layer and sample.
    unbalanced : int
        Samples with a layer whose residual exceeds the ledger tolerance
        (1e-12 in float64, 1e-5 in float32); 0 when every book balances.
    absorbed_share : float
        Mean over samples of ``|sum of absorbed| / |f(x)|``.
    """

    path: Path
    n_samples: int
    n_chunks: int
    computed: tuple[int, ...]
    reused: tuple[int, ...]
    seconds: float
    max_residual: float
    unbalanced: int
    absorbed_share: float

    def __str__(self) -> str:
        chunks = f"{self.n_chunks} chunk{'s' if self.n_chunks != 1 else ''}"
        rate = ""
        if self.computed:  # about: chunks are equal but the last
            rate = f", {self.n_samples * len(self.computed) / self.n_chunks / max(self.seconds, 1e-9):.0f} samples/s"
        return (f"{self.n_samples} samples in {chunks} -> {self.path} ({len(self.computed)} computed, "
                f"{len(self.reused)} verified and kept; {self.seconds:.1f}s{rate}); ledger: max "
                f"relative residual {self.max_residual:.2e}, {self.unbalanced} unbalanced sample(s), mean absorbed "
                f"share {self.absorbed_share:.3g} of |f(x)|")

# ----------------------------------------------------------------------------- the model and the rules


def _model_sha256(model: Graph) -> str:
    """SHA-256 of a model object: node names, inputs, layer types and every parameter's bytes."""
    h = hashlib.sha256()
    for node in model.nodes:
        h.update(f"{node.name}|{node.inputs}|{type(node.layer).__name__}|".encode())
        for f in dataclasses.fields(node.layer):  # type: ignore[arg-type]
            value = getattr(node.layer, f.name)
            if isinstance(value, np.ndarray):
                h.update(f"{f.name}|{value.dtype.str}|{value.shape}|".encode())
                h.update(np.ascontiguousarray(value).tobytes())
            else:
                h.update(f"{f.name}={value!r}|".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def _load_checked(path: str, sha256: str, dtype: str) -> Graph:
    """The model at ``path`` in ``dtype``, once its file's SHA-256 is checked (cached per process: Dask workers
    explain many chunks of one model)."""
    found = store.sha256_file(Path(path))
    if found != sha256:
        raise ArgumentError(f"model file {path} has SHA-256 {found[:16]}..., but the run explains {sha256[:16]}...; "
                            "every worker must see the same model file at the same path")
    return io.load(path).astype(np.dtype(dtype))


def _bounds(model: Graph) -> tuple[Array, Array] | None:
    meta = model.metadata
    if "input_low" not in meta or "input_high" not in meta:
        return None
    def per_channel(value: Any) -> Array:
        arr = np.asarray(value, dtype=np.float64)
        return arr[:, None, None] if arr.ndim == 1 else arr
    return per_channel(meta["input_low"]), per_channel(meta["input_high"])


def _rules(rules: Rules, model: Graph) -> Rule | Composite | Sequence[Rule | None]:
    if isinstance(rules, str):
        return catalog.from_spec(rules, _bounds(model))
    return rules


# ----------------------------------------------------------------------------- Dask


def _dask_chunk(job: str, i: int) -> dict[str, Any]:
    """One Dask task: chunk ``i`` of the run described by ``job`` (JSON of plain values), written to its part."""
    spec = json.loads(job)
    t0 = time.perf_counter()
    wanted = json.loads(spec["identity"])["lrp_ref_version"]
    if _version() != wanted:
        raise ArgumentError(f"this Dask worker has lrp_ref {_version()}, the run {wanted}: install the same version "
                            "on every worker")
    model = _load_checked(spec["model"], spec["model_sha256"], spec["dtype"])
    source = store.SourceSpec.from_json(spec["source"])
    target_spec = spec["target"]
    with store.open_source(source, "source") as src:
        if isinstance(target_spec, dict):
            with store.open_source(store.SourceSpec.from_json(target_spec), "target") as tgt:
                work = _work_from_job(spec, model, src, tgt)
                work.write(Path(spec["parts"]), i)
        else:
            work = _work_from_job(spec, model, src, target_spec)
            work.write(Path(spec["parts"]), i)
    return {"chunk": i, "rows": work.span(i)[1] - work.span(i)[0], "seconds": time.perf_counter() - t0}


def _work_from_job(spec: dict[str, Any], model: Graph, source: Any, target: Any) -> run.Work:
    return run.Work(model, _rules(spec["rules"], model), spec["profile"], source, target, spec["raw"],
                 spec["batch_size"], spec["chunk_size"], spec["n"], spec["identity"])


def _run_dask(client: Any, job: dict[str, Any], todo: list[int], progress: run.Progress) -> None:
    try:
        from distributed import as_completed
    except ImportError:  # pragma: no cover - a client without distributed cannot exist
        raise ArgumentError("client= needs dask.distributed: pip install 'lrp_ref[dask]'") from None
    text = json.dumps(job, sort_keys=True)
    token = uuid.uuid4().hex[:12]  # a fresh key: never a result cached from another call
    futures = [client.submit(_dask_chunk, text, i, key=f"lrp-ref-chunk-{token}-{i}", pure=False) for i in todo]
    try:
        for future in as_completed(futures):
            result = future.result()
            progress.add(int(result["rows"]), f"chunk {result['chunk']}")
    finally:
        client.cancel([f for f in futures if not f.done()])


# ----------------------------------------------------------------------------- the driver


def _run_here(work: run.Work, parts: Path, todo: list[int], bar: run.Progress, n_chunks: int) -> None:
    """Explain the chunks ``todo`` in this process; each part is compressed and written in a second thread
    while the next chunk is explained (zlib, hashlib and NumPy release the GIL), so that at most two
    chunks' results are held at once."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrp-ref-part-writer") as writer:
        pending: Future[None] | None = None
        for i in todo:
            label = f"chunk {i + 1}/{n_chunks}"
            arrays, input_sha = work.compute(i, lambda k, label=label: bar.add(k, label))  # type: ignore[misc]
            if pending is not None:
                pending.result()
            pending = writer.submit(work.finish, parts, i, arrays, input_sha)
            del arrays
        if pending is not None:
            pending.result()


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{what} must be a positive int; got {value!r}")
    return int(value)


def _default_chunk_size(batch_size: int, sample_bytes: int) -> int:
    """Four batches, fewer if that would hold more than 64 MiB of relevance (at least one batch)."""
    return max(batch_size, min(4 * batch_size, (64 << 20) // max(sample_bytes, 1)))


def explain_dataset(
    model: Graph | str | Path,
    source: Any,
    rules: Rules,
    out: str | Path,
    *,
    batch_size: int = 256,
    chunk_size: int | None = None,
    target: Any = None,
    profile: str | Profile = "lrp_ref",
    dtype: Any = None,
    raw: bool = False,
    progress: bool = True,
    client: Any = None,
    overwrite: bool = False,
    keep_parts: bool = False,
) -> DatasetSummary:
    """Explain every sample of ``source`` into the HDF5 file ``out``, chunk by chunk; resumable; Dask optional.

    For every sample ``x_n`` the output holds what :func:`lrp_ref.explain`
    returns for it: the input relevance ``R(x_n)``, the explained output
    neuron, its score ``f(x_n)``, and per layer the ledger's absorbed share,
    residual ``R_out - R_in - absorbed`` and scale (layout: ``docs/dataset.md``).
    Samples are explained in batches of ``batch_size`` that start at every
    chunk boundary, so the result does not depend on how chunks are spread
    over processes: a Dask run equals the single-process run bit for bit.

    Parameters
    ----------
    model : Graph, or path of an lrp_ref model file
        A path is needed with ``client`` (workers load the model from it).
    source : h5py.Dataset, ``"file.h5:dataset/path"``, ``"file.npy"`` or array-like (N, ...)
        Model inputs (N, *input_shape); with ``raw=True``, raw values (e.g.
        MNIST pixels 0..255 of shape (N, 28, 28)) that the model's metadata
        maps to inputs: ``x = raw * input_scale + input_offset``.
    rules : Rule, Composite, list of rules, or specification string
        As for :func:`lrp_ref.explain`; a string is a :mod:`lrp_ref.catalog`
        specification (``"epsilon_gamma_box"``, ``"zbox+epsilon:epsilon=0.25"``),
        with zB's bounds from the model's ``input_low``/``input_high``.
        With ``client``, a string is required (it is what travels).
    out : path
        The output HDF5 file.  Chunks go to the folder ``out + ".parts"``
        until the output is assembled.
    batch_size : int, default 256
        Samples per :func:`lrp_ref.explain` call.
    chunk_size : int, optional
        Samples per chunk (one part file, one Dask task, the unit of
        resuming and of memory).  Default: four batches, fewer if a chunk's
        relevance would pass 64 MiB.
    target : None, int, or per-sample targets (N,)
        None explains each sample's arg-max; per-sample targets may be given
        like ``source`` (array, ``"file.h5:labels"``, ``"file.npy"``).
    profile : str or Profile
        Convention profile (:mod:`lrp_ref.profiles`); a name with ``client``.
    dtype : float32 or float64, optional
        Computation dtype; default the model's (float64 for a model file).
    raw : bool, default False
        The source holds raw values to map through the model's preprocessing.
    progress : bool, default True
        A progress bar with ETA on stderr.
    client : dask.distributed.Client, optional
        Run one task per missing chunk on the client's workers (extra ``dask``).
    overwrite : bool, default False
        Replace an output or parts of a different run instead of refusing.
    keep_parts : bool, default False
        Keep the part files after assembling the output.

    Returns
    -------
    DatasetSummary

    Raises
    ------
    ArgumentError
        Bad arguments; an existing output or parts of a different run
        (the message lists what differs) or a source that changed.
    ShapeError, TargetError, RuleAssignmentError, RuleParameterError, NonFiniteError
        As :func:`lrp_ref.explain` would, naming the chunk.
    """
    t0 = time.perf_counter()
    batch_size = _check_int(batch_size, "batch_size")
    if not isinstance(profile, (str, Profile)):
        raise ArgumentError(f"profile must be a profile name ({', '.join(PROFILES)}) or a Profile; "
                            f"got {type(profile).__name__}")
    conventions = get_profile(profile)
    # the model: a file (hashed as bytes) or an object (hashed by its parameters)
    if isinstance(model, (str, Path)):
        resolved = Path(model).resolve()
        if not resolved.is_file():
            raise ArgumentError(f"model {model}: no such file (expected an lrp_ref model file, e.g. "
                                "weights/mnist_cnn.h5)")
        model_path: str | None = str(resolved)
        model_sha = store.sha256_file(resolved)
        base = io.load(resolved)
    elif isinstance(model, Graph):
        model_path, model_sha, base = None, _model_sha256(model), model
    else:
        raise ArgumentError(f"model must be an lrp_ref Graph/Sequential or the path of a model file; "
                            f"got {type(model).__name__}")
    dt = base.dtype if dtype is None else check_dtype(dtype)
    live = base if base.dtype == dt else base.astype(dt)
    built = _rules(rules, live)
    layer_rules = [repr(conventions.resolve(r, layer))
                   for r, layer in zip(resolve_rules(built, live, conventions.default_rule), live)]

    src_spec = store.source_spec(source, "source")
    if isinstance(target, bool):
        raise TargetError(f"target must be None, an int or per-sample targets; got {target!r}")
    per_class = target is None or isinstance(target, (int, np.integer))
    tgt_spec = None if per_class else store.source_spec(target, "target")
    target_value: Any = int(target) if target is not None and tgt_spec is None else None

    if client is not None:
        why = [w for w, bad in (("model must be a file path (workers load it)", model_path is None),
                                ("rules must be a specification string such as 'epsilon_gamma_box'",
                                 not isinstance(rules, str)),
                                ("profile must be a name", not isinstance(profile, str)))
               if bad]
        if why:
            raise ArgumentError("with client= only paths and names travel to the workers: " + "; ".join(why))
        src_spec.to_json()  # refuses an in-memory array
        if tgt_spec is not None:
            tgt_spec.to_json()

    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    with store.open_source(src_spec, "source") as src, \
            (store.open_source(tgt_spec, "target") if tgt_spec else nullcontext()) as tgt:
        n = int(src.shape[0]) if len(src.shape) else 0
        if n == 0:
            raise ShapeError(f"source {src_spec.describe()} has shape {tuple(src.shape)}; "
                             "expected (N, ...) with N >= 1")
        if tgt is not None and tuple(tgt.shape) != (n,):
            raise TargetError(f"target {tgt_spec.describe() if tgt_spec else ''} has shape {tuple(tgt.shape)}; "
                              f"expected ({n},), one per sample of the source")
        if raw and "input_shape" not in live.metadata:
            raise ArgumentError("raw=True maps raw values through the model's input_shape, input_scale and "
                                "input_offset, but the model declares no input_shape; pass model inputs (raw=False)")
        sample_shape = tuple(int(s) for s in live.metadata["input_shape"]) if raw else tuple(src.shape[1:])
        try:
            shapes = live.shapes(sample_shape)
        except ShapeError as exc:
            raise ShapeError(f"source {src_spec.describe()} of shape {tuple(src.shape)} does not fit the model: "
                             f"{exc}") from None
        if len(shapes[-1]) != 1:
            raise ShapeError(f"explain_dataset needs a model with outputs (N, n_outputs); this one gives "
                             f"{shapes[-1]} per sample")
        sample_bytes = math.prod(sample_shape) * dt.itemsize
        chunk = _default_chunk_size(batch_size, sample_bytes) if chunk_size is None \
            else _check_int(chunk_size, "chunk_size")
        n_chunks = -(-n // chunk)
        identity = {
            "format": store.FORMAT, "format_version": store.FORMAT_VERSION, "lrp_ref_version": _version(),
            "model_sha256": model_sha, "dtype": dt.name, "layer_rules": layer_rules, "profile": conventions.name,
            "batch_size": batch_size, "chunk_size": chunk, "n_samples": n, "source_shape": list(src.shape),
            "source_dtype": np.dtype(src.dtype).str, "sample_shape": list(sample_shape), "raw": bool(raw),
            "target": "argmax" if target is None else ("per sample" if tgt_spec else target_value),
        }
        ident = store.canonical(identity)
        work = run.Work(live, built, profile, src, tgt if tgt_spec else target_value, bool(raw), batch_size, chunk, n,
                     ident)
        info = {"model": model_path or f"a {type(live).__name__} object", "rules": rules if isinstance(rules, str)
                else repr(rules), "source": src_spec.describe(), "compression": f"gzip {store.GZIP_LEVEL}, shuffle",
                "layers": [live.label(i) for i in range(len(live))]}

        if out.exists():
            reused = run.check_existing_output(out, identity, work, n_chunks, overwrite)
            if reused:
                return _summary(out, n, n_chunks, (), tuple(range(n_chunks)), t0)
        done = run.prepare_parts(parts, identity, work, n_chunks, overwrite)
        todo = [i for i in range(n_chunks) if i not in done]
        bar = run.Progress(n, sum(work.span(i)[1] - work.span(i)[0] for i in done), progress)
        if client is None:
            _run_here(work, parts, todo, bar, n_chunks)
        elif todo:
            assert model_path is not None and isinstance(rules, str) and isinstance(profile, str)
            job = {"model": model_path, "model_sha256": model_sha, "dtype": dt.name, "rules": rules,
                   "profile": profile, "source": src_spec.to_json(), "raw": bool(raw), "batch_size": batch_size,
                   "chunk_size": chunk, "n": n, "identity": ident, "parts": str(parts.resolve()),
                   "target": tgt_spec.to_json() if tgt_spec else target_value}
            _run_dask(client, job, todo, bar)
        run.assemble(out, parts, identity, info, work, n_chunks, shapes[-1][0], len(live))
    if not keep_parts:
        shutil.rmtree(parts)
    return _summary(out, n, n_chunks, tuple(todo), tuple(sorted(done)), t0)


def _version() -> str:
    from . import __version__

    return __version__


def _summary(out: Path, n: int, n_chunks: int, computed: tuple[int, ...], reused: tuple[int, ...], t0: float
             ) -> DatasetSummary:
    with h5py.File(out, "r") as f:
        a = f.attrs
        return DatasetSummary(out, n, n_chunks, computed, reused, time.perf_counter() - t0,
                              float(a["ledger_max_residual"]), int(a["ledger_unbalanced"]), float(a["absorbed_share"]))
