r"""Merge layers: where branches of a :class:`~lrp_ref.graph.Graph` meet (residual sums, concatenations).

A merge layer has several inputs.  The graph *packs* them into one array
before the layer sees them, and *unpacks* the relevance of that array into
one relevance per input afterwards; in between a merge layer is an ordinary
layer with one input, so the rules of :mod:`lrp_ref.rules` apply to it as
they are, with nothing written twice:

* :class:`Add` packs its ``k`` summands along a new axis 1, ``(N, k, ...)``,
  and is the *linear* layer ``z = sum_i w_i a_i`` with one weight per summand
  (all 1).  So LRP-0 and epsilon on it split the relevance in proportion to
  each summand's contribution,

  .. math:: R_i = \frac{a_i}{\sum_{i'} a_{i'} + \epsilon\,\mathrm{sign}(\cdot)} R

  (zennit's ``Norm`` on its canonizers' ``Sum``; the stabiliser's share is
  absorbed and the ledger records it); ``Flat`` splits it equally,
  ``R_i = R / k``; z+ keeps the positive contributions only.
* :class:`Concat` packs its inputs by concatenating them along the channel
  axis, which is already its output: the relevance is split back by slices,
  exactly (the rule :class:`~lrp_ref.rules.Pass`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import as_float_array, check_dtype, check_int
from .errors import ShapeError
from .layers import Layer, LinearLayer

__all__ = ["Add", "Concat", "MergeLayer"]

Array = NDArray[Any]
Shape = tuple[int, ...]


class MergeLayer(Layer):
    """A layer with several inputs, seen by the rules as one packed input (see the module docstring)."""

    #: number of inputs
    n_inputs: int

    def pack(self, inputs: Sequence[Array]) -> Array:
        """The packed batch the layer computes on, from one batch per input."""
        raise NotImplementedError

    def packed_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        """One sample's packed shape for one sample's shape per input (raises ShapeError if they do not fit)."""
        raise NotImplementedError

    def unpack(self, packed: Array, input_shapes: Sequence[Shape]) -> list[Array]:
        """Split a batch of the packed shape (a relevance) into one batch per input."""
        raise NotImplementedError

    def relevance(self, a: Any, R: Array, rule: Any = None) -> Any:
        """One step of LRP through the merge: one relevance per input (see :meth:`Layer.relevance`).

        ``a`` is the list of input batches (``[a_1, ..., a_k]``); the result is
        the list of their relevances, e.g. ``Add().relevance([x, y], R)``
        (default rule: epsilon, the proportional split).
        """
        if isinstance(a, np.ndarray):
            raise ShapeError(f"{self.describe()}.relevance expects a list of its {self.n_inputs} input batches; "
                             "got one array")
        shapes = [tuple(x.shape[1:]) for x in a]
        return self.unpack(self._step(self.pack(a), R, rule).relevance, shapes)

    def _check_count(self, n: int) -> None:
        if n != self.n_inputs:
            raise ShapeError(f"{self.describe()} takes {self.n_inputs} inputs; got {n}")


@dataclass(frozen=True, eq=False, repr=False)
class Add(LinearLayer, MergeLayer):
    r"""The sum of ``n_inputs`` tensors of one shape: ``z = sum_i w_i a_i`` with ``w_i = 1``.

    The packed input is ``(N, k, ...)``, the summands stacked along axis 1.
    A linear layer without bias: ``weight`` holds the ``k`` summand weights,
    which rules modify like any weight (``Flat`` sets them to 1, the gamma rule
    to ``1 + gamma``).

    Parameters
    ----------
    n_inputs : int >= 2, default 2
    weight : array (n_inputs,) or None
        The summand weights; None means all 1.  Rules set them through
        :meth:`with_weight`; users rarely need it.
    dtype : float64 (default) or float32
    """

    n_inputs: int = 2
    weight: Array | None = None  # type: ignore[assignment]
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        k = check_int(self.n_inputs, "Add n_inputs", 2, 2**16)
        object.__setattr__(self, "n_inputs", k)
        w = np.ones(k) if self.weight is None else self.weight
        w = as_float_array(w, "Add weight (n_inputs,)", dt, ndim=1)
        if w.shape != (k,):
            raise ShapeError(f"Add weight must have shape ({k},), one per summand; got {w.shape}")
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    def n_parameters(self) -> int:
        return 0

    def pack(self, inputs: Sequence[Array]) -> Array:
        self._check_count(len(inputs))
        self.packed_shape([tuple(a.shape[1:]) for a in inputs])
        return np.stack(inputs, axis=1)

    def packed_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        self._check_count(len(input_shapes))
        if len(set(map(tuple, input_shapes))) != 1:
            raise ShapeError(f"{self.describe()} adds tensors of one shape; got {', '.join(map(str, input_shapes))}")
        return (self.n_inputs, *input_shapes[0])

    def unpack(self, packed: Array, input_shapes: Sequence[Shape]) -> list[Array]:
        return [packed[:, i] for i in range(self.n_inputs)]

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1 or input_shape[0] != self.n_inputs:
            raise ShapeError(f"{self.describe()} expects its {self.n_inputs} summands packed as "
                             f"(N, {self.n_inputs}, ...); got (N, {', '.join(map(str, input_shape))})")
        return tuple(input_shape[1:])

    def _weights_for(self, ndim: int) -> Array:
        assert self.weight is not None
        return self.weight.reshape((1, -1) + (1,) * (ndim - 2))

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        return (a * self._weights_for(a.ndim)).sum(axis=1)

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # the adjoint of a weighted sum: every summand receives w_i * s
        self.check_output(s, input_shape)
        return s[:, None] * self._weights_for(s.ndim + 1)

    def with_weight(self, weight: Array) -> Add:
        return replace(self, weight=self._checked_weight(weight))

    def bias_term(self) -> Array:
        return np.zeros((), self.dtype)

    def describe(self) -> str:
        assert self.weight is not None
        tail = "" if np.all(self.weight == 1) else ", modified weights"
        return f"Add({self.n_inputs} inputs{tail})"


@dataclass(frozen=True, eq=False, repr=False)
class Concat(MergeLayer):
    """Concatenation of ``n_inputs`` tensors along the channel axis (axis 1 of the batch).

    The packed input is the concatenation itself, so the layer is the
    identity on it, and the relevance is split back by slices: exactly, with
    nothing absorbed (the rule :class:`~lrp_ref.rules.Pass`).

    Parameters
    ----------
    n_inputs : int >= 2, default 2
    dtype : float64 (default) or float32
    """

    n_inputs: int = 2
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        object.__setattr__(self, "n_inputs", check_int(self.n_inputs, "Concat n_inputs", 2, 2**16))

    def pack(self, inputs: Sequence[Array]) -> Array:
        self._check_count(len(inputs))
        self.packed_shape([tuple(a.shape[1:]) for a in inputs])
        return np.concatenate(inputs, axis=1)

    def packed_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        self._check_count(len(input_shapes))
        if any(len(s) < 1 for s in input_shapes) or len({tuple(s[1:]) for s in input_shapes}) != 1:
            raise ShapeError(f"{self.describe()} concatenates channels of tensors whose other axes agree; got "
                             f"{', '.join(map(str, input_shapes))}")
        return (sum(s[0] for s in input_shapes), *input_shapes[0][1:])

    def unpack(self, packed: Array, input_shapes: Sequence[Shape]) -> list[Array]:
        bounds = itertools.accumulate([s[0] for s in input_shapes], initial=0)
        return [packed[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"{self.describe()} expects (N, C, ...); got (N,)")
        return tuple(input_shape)

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return a

    def describe(self) -> str:
        return f"Concat({self.n_inputs} inputs, channels)"
