"""The relevance ledger: where relevance went, layer by layer, and checks that it balances.

For every layer and sample the ledger records

* ``r_out``:  the relevance arriving at the layer's output (from above),
* ``r_in``:   the relevance the layer passes to its input (below),
* ``absorbed``: what its rule's bias terms, stabilisers and zero
  denominators took, computed by the rule from its own denominators.

Two checks can then fail and therefore mean something:

1. *balance*: ``r_out - r_in - absorbed == 0`` for every layer, to a relative
   tolerance (1e-12 in float64).  This catches a wrong adjoint, a broken
   stride or padding, a relevance lost in max pooling.
2. *conservation*: ``sum R_input + sum absorbed == sum R_start`` (the explained
   score f(x) for the default start), and for configurations that conserve
   exactly (no bias, no stabiliser, or rules that drop the bias)
   ``sum R_input == f(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _threads
from .errors import ArgumentError, ConservationError

__all__ = ["BoundarySums", "LayerBalance", "Ledger", "default_rtol"]

Array = NDArray[Any]


def default_rtol(dtype: Any) -> float:
    """Relative tolerance of the ledger checks: 1e-12 in float64, 1e-5 in float32."""
    return 1e-12 if np.dtype(dtype) == np.float64 else 1e-5


def _abs_sum(x: Array) -> Array:
    return _threads.per_sample_sum(x, absolute=True)


@dataclass(frozen=True)
class LayerBalance:
    """The ledger line of one layer, each field an array over the batch (N,)."""

    index: int
    layer: str
    rule: str
    r_out: Array
    r_in: Array
    absorbed: Array
    #: magnitude the residual is compared with: sum|R_out| + sum|R_in| + |absorbed|
    scale: Array

    @property
    def residual(self) -> Array:
        """``r_out - r_in - absorbed``: zero up to rounding when the books balance."""
        return self.r_out - self.r_in - self.absorbed

    @classmethod
    def from_arrays(cls, index: int, layer: str, rule: str, R_out: Array, R_in: Array, absorbed: Array,
                    sums: BoundarySums | None = None) -> LayerBalance:
        """The line of one layer from its relevance arrays; ``sums`` reuses sums already taken."""
        sums = BoundarySums() if sums is None else sums
        r_out, abs_out = sums(R_out)
        r_in, abs_in = sums(R_in)
        scale = abs_out + abs_in + np.abs(absorbed)
        return cls(index, layer, rule, r_out, r_in, absorbed, scale)


class BoundarySums:
    """Per-sample ``sum R`` and ``sum |R|`` of relevance arrays, each array summed once.

    The relevance a layer passes down is, in a chain, the next layer's
    ``R_out`` (the same array, or a reshaped view of the same memory after a
    flatten): its sums are taken once and reused for both ledger lines.
    Made per explanation; it remembers only the last array it summed.
    """

    def __init__(self) -> None:
        self._last: tuple[Array, Array, Array] | None = None

    @staticmethod
    def _same_data(x: Array, y: Array) -> bool:
        """Whether ``x`` and ``y`` hold the same values in the same (C) order: one buffer seen in two shapes."""
        return (x is y or (x.dtype == y.dtype and x.size == y.size and x.shape[:1] == y.shape[:1]
                           and x.flags.c_contiguous and y.flags.c_contiguous
                           and x.__array_interface__["data"][0] == y.__array_interface__["data"][0]))

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """``(sum R, sum |R|)`` per sample (N,), as ``x.reshape(N, -1).sum(axis=1)`` computes them."""
        if self._last is not None and self._same_data(self._last[0], x):
            return self._last[1], self._last[2]
        total, magnitude = _threads.per_sample_sum(x), _abs_sum(x)
        self._last = (x, total, magnitude)  # x is held, so its buffer cannot be reused by another array meanwhile
        return total, magnitude


@dataclass(frozen=True)
class Ledger:
    """Per-layer relevance bookkeeping of one explanation (see the module docstring).

    ``entries[i]`` belongs to layer ``i`` of the model.  ``start`` is the total
    start relevance per sample (the explained score f(x) by default) and
    ``input_relevance`` the total relevance that reached the input.  For a
    start at an intermediate node ``s`` (``explain(..., start_at=...)``),
    ``start`` is the start relevance there (the chosen neuron's activation),
    the entries stop at node ``s``, and a node the start does not depend on
    (another branch of a graph) has a line of zeros; ``start_label`` names
    the start in :meth:`table`.
    """

    entries: tuple[LayerBalance, ...]
    start: Array
    input_relevance: Array
    dtype: np.dtype[Any]
    start_label: str = "f(x) (start)"

    @property
    def absorbed(self) -> Array:
        """Total relevance absorbed over all layers, per sample."""
        return np.sum([e.absorbed for e in self.entries], axis=0)

    def _total_scale(self) -> Array:
        """|f(x)| plus every layer's scale: what the whole-network gaps are compared with."""
        return np.abs(self.start) + np.sum([e.scale for e in self.entries], axis=0)

    def _rtol(self, rtol: float | None) -> float:
        return default_rtol(self.dtype) if rtol is None else rtol

    def check_balance(self, rtol: float | None = None) -> None:
        """Raise :class:`ConservationError` unless every layer balances.

        Layer ``i`` balances when ``|r_out - r_in - absorbed| <= rtol * scale``
        for every sample, where ``scale = sum|R_out| + sum|R_in| + |absorbed|``.
        """
        tol = self._rtol(rtol)
        tiny = np.finfo(self.dtype).tiny
        bad = [e for e in self.entries if np.any(np.abs(e.residual) > tol * np.maximum(e.scale, tiny))]
        if bad:
            lines = [
                f"layer {e.index} ({e.layer}, rule {e.rule}): residual {np.abs(e.residual).max():.3e} "
                f"exceeds {tol:g} x scale {e.scale.max():.3e}"
                for e in bad
            ]
            raise ConservationError("relevance does not balance:\n  " + "\n  ".join(lines))

    def check_conservation(self, rtol: float | None = None) -> None:
        """Raise unless ``sum R_input + sum absorbed == sum R_start`` for every sample."""
        tol = self._rtol(rtol)
        scale = self._total_scale()
        gap = self.start - self.input_relevance - self.absorbed
        if np.any(np.abs(gap) > tol * scale):
            raise ConservationError(
                f"input relevance {self.input_relevance} plus absorbed {self.absorbed} "
                f"differs from the start relevance {self.start} by {gap} (rtol {tol:g})"
            )

    def check_exact(self, rtol: float | None = None) -> None:
        """Strict conservation: raise unless ``sum R_input == sum R_start`` (= f(x)).

        Only configurations that conserve exactly pass: no bias, no
        stabiliser, or rules that drop the bias.  The message names the layers
        that absorbed relevance.
        """
        tol = self._rtol(rtol)
        scale = self._total_scale()
        gap = self.start - self.input_relevance
        if np.any(np.abs(gap) > tol * scale):
            culprits = [
                f"layer {e.index} ({e.layer}, {e.rule}) absorbed {e.absorbed}"
                for e in self.entries
                if np.any(np.abs(e.absorbed) > tol * e.scale)
            ]
            raise ConservationError(
                f"sum of input relevance {self.input_relevance} != f(x) = {self.start} "
                f"(gap {gap}, rtol {tol:g}); relevance was absorbed by:\n  " + "\n  ".join(culprits)
            )

    def table(self, sample: int = 0) -> str:
        """A readable table of one sample's ledger, from the output layer down (a graph's nodes by name).

        For a batch, the table says which sample it shows (``str(ledger)``
        shows sample 0; ``table(k)`` sample ``k``).
        """
        n = len(self.start)
        if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) or not -n <= sample < n:
            raise ArgumentError(f"sample must be an int in [0, {n - 1}] (the ledger holds {n} sample(s)); "
                                f"got {sample!r}")
        # columns as wide as the longest entry (at least 30 and 40, at most 60 characters)
        lw = min(max([30] + [len(e.layer) for e in self.entries]), 60)
        rw = min(max([40] + [len(e.rule) for e in self.entries]), 60)
        header = (f"{'layer':>5}  {'type':<{lw}} {'rule':<{rw}} {'R out':>12} {'R in':>12} {'absorbed':>12} "
                  f"{'residual':>10}")
        lines = [header, "-" * len(header)]
        for e in reversed(self.entries):
            lines.append(
                f"{e.index:>5}  {e.layer[:lw]:<{lw}} {e.rule[:rw]:<{rw}} {e.r_out[sample]:>12.6g} "
                f"{e.r_in[sample]:>12.6g} {e.absorbed[sample]:>12.4g} {e.residual[sample]:>10.2e}"
            )
        lines.append("-" * len(header))
        if n > 1:
            lines.append(f"sample {sample % n} of a batch of {n} (table(k) shows sample k)")
        lines.append(
            f"{self.start_label} {self.start[sample]:.10g} = input relevance {self.input_relevance[sample]:.10g}"
            f" + absorbed {self.absorbed[sample]:.10g}"
            f"  (gap {self.start[sample] - self.input_relevance[sample] - self.absorbed[sample]:.2e})"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
