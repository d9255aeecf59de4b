"""Element-wise work split over a small thread pool, with results bit-identical to one thread.

NumPy releases the GIL inside its element-wise kernels, so two threads that
each take half of a large array run on two cores.  Only work whose every
output element is computed exactly as in one call is split here:

* element-wise ufuncs (``a * c``, ``R / z``, ...), copies and in-place sums
  of shifted slices (im2col, col2im, pooling): each element sees the same
  operations whichever block it falls in;
* per-sample reductions (the ledger's ``sum R``): split over whole samples
  only, so every sample's sum runs over the same row in the same order.

Blocks are taken over the batch axis (whole samples) or, for a batch too
small to split, over the second (channel) axis.  Matrix products are left to
the BLAS, which has its own threads; the pool is idle while they run.

The number of threads is ``LRP_REF_THREADS`` if set (1 turns the pool off),
else the number of cores this process may run on
(``os.sched_getaffinity``).  The pool is made on first use, not at import,
and holds no state about any computation: it is dropped in a forked child.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError

__all__ = ["MIN_ELEMENTS", "elementwise", "n_threads", "per_sample_sum", "run_blocks"]

Array = NDArray[Any]
Index = tuple[slice, ...]

#: Arrays smaller than this (elements) are not split: handing a block to a thread costs 25-50 microseconds,
#: about what one core takes to multiply 2**17 float32 values (measured on the 2-core machine of bench/).
MIN_ELEMENTS = 1 << 18

_lock = threading.Lock()
_state = threading.local()  # .inside: this thread is running a block
_executor: ThreadPoolExecutor | None = None
_executor_size = 0


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: forget it, a new one is made on first use."""
    global _executor, _executor_size
    _executor, _executor_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def n_threads() -> int:
    """Threads for element-wise work: ``LRP_REF_THREADS``, else the cores this process may use."""
    value = os.environ.get("LRP_REF_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ArgumentError(f"LRP_REF_THREADS must be a positive integer (1 turns threads off); got {value!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool(workers: int) -> ThreadPoolExecutor:
    global _executor, _executor_size
    with _lock:
        if _executor is None or _executor_size < workers:
            if _executor is not None:
                _executor.shutdown(wait=False)
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lrp_ref")
            _executor_size = workers
        return _executor


def _split(shape: Sequence[int], k: int, min_elements: int, batch_only: bool) -> list[Index]:
    """Up to ``k`` index prefixes cutting an array of ``shape`` into blocks: whole samples, else channels."""
    if not len(shape) or math.prod(shape) < min_elements or k < 2:
        return [()]
    if shape[0] >= 2:
        axis = 0
    elif not batch_only and len(shape) >= 2 and shape[1] >= 2:
        axis = 1  # one sample: blocks of channels
    else:
        return [()]
    parts = min(k, int(shape[axis]))
    bounds = [int(shape[axis]) * p // parts for p in range(parts + 1)]
    lead = (slice(None),) * axis
    return [(*lead, slice(bounds[p], bounds[p + 1])) for p in range(parts)]


def run_blocks(fn: Callable[[Index], Any], shape: Sequence[int], min_elements: int | None = None,
               batch_only: bool = False) -> list[Any]:
    """Call ``fn(index)`` for blocks of an array of ``shape``; blocks run on the pool's threads.

    ``index`` is a tuple of slices for the leading axes (``()`` for the whole
    array).  ``fn`` must write only the block it is given.  NumPy's error
    state (:func:`numpy.errstate`) of the caller holds in every thread.
    Results are returned in block order; an exception in any block is raised.
    """
    if getattr(_state, "inside", False):  # a block that splits its own work: no second level of threads
        return [fn(())]
    minimum = MIN_ELEMENTS if min_elements is None else min_elements
    # (the thread count is read only for arrays large enough to split)
    blocks = _split(shape, n_threads() if math.prod(shape) >= minimum else 1, minimum, batch_only)
    if len(blocks) == 1:
        return [fn(blocks[0])]
    err = np.geterr()

    def task(index: Index) -> Any:
        _state.inside = True
        try:
            with np.errstate(**err):
                return fn(index)
        finally:
            _state.inside = False

    pool = _pool(len(blocks) - 1)
    futures: list[Future[Any]] = [pool.submit(task, index) for index in blocks[1:]]
    try:
        first = task(blocks[0])  # the calling thread takes the first block
    finally:
        rest = [f.result() for f in futures]  # waits for all, raises the first error
    return [first, *rest]


def _part(x: Any, index: Index, ndim: int) -> Any:
    """The block ``index`` of an operand broadcast against an ``ndim``-dimensional result."""
    if not index or not isinstance(x, np.ndarray) or x.ndim == 0:
        return x
    axis = len(index) - 1
    own = axis - (ndim - x.ndim)  # the operand's axis aligned with the result's split axis
    if own < 0 or x.shape[own] == 1:
        return x  # broadcast along the split axis: every block reads all of it
    return x[(slice(None),) * own + (index[-1],)]


def elementwise(op: np.ufunc, *operands: Any, out: Array | None = None) -> Array:
    """``op(*operands, out=out)``, computed block by block on the pool; bit-identical to one call.

    ``out`` defaults to a new array of the broadcast shape and the result's dtype.
    """
    shape = np.broadcast_shapes(*(np.shape(x) for x in operands))
    if out is None:
        if math.prod(shape) < MIN_ELEMENTS or n_threads() < 2:
            return op(*operands)
        out = np.empty(shape, np.result_type(*operands))
    target = out
    ndim = len(shape)

    def block(index: Index) -> None:
        op(*(_part(x, index, ndim) for x in operands), out=target[index] if index else target)

    run_blocks(block, shape)
    return target


def per_sample_sum(x: Array, absolute: bool = False) -> Array:
    """``x.reshape(N, -1).sum(axis=1)`` (of ``|x|`` if ``absolute``), blocks of whole samples on the pool."""
    rows = x.reshape(x.shape[0], -1)

    def block(index: Index) -> Array:
        part = rows[index] if index else rows
        return (np.abs(part) if absolute else part).sum(axis=1)

    sums = run_blocks(block, rows.shape, batch_only=True)
    return sums[0] if len(sums) == 1 else np.concatenate(sums)
