"""Batch normalisation in inference mode: a per-channel affine map, a linear layer for the rules.

:func:`lrp_ref.canonize` merges a batch norm into the Dense or Conv2d layer
before it.  Import these names from :mod:`lrp_ref.layers` or :mod:`lrp_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._checks import (
    as_float_array,
    check_dtype,
    element_count,
    real_number,
)
from .errors import LayerParameterError, NonFiniteError, ShapeError
from .layers import (
    Array,
    LinearLayer,
    Shape,
    _frozen,
)


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm(LinearLayer):
    r"""Batch normalisation in inference mode, a per-channel affine map (:class:`BatchNorm1d`, :class:`BatchNorm2d`).

    .. math:: z_{c,\dots} = \frac{a_{c,\dots} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}\, \gamma_c + \beta_c
              = w_c\, a_{c,\dots} + b_c, \qquad
              w_c = \frac{\gamma_c}{\sqrt{\sigma^2_c + \epsilon}}, \quad b_c = \beta_c - \mu_c w_c

    as PyTorch computes it with the running statistics (``module.eval()``).
    As a linear layer its weight is the per-channel scale ``w`` (C,), the
    diagonal of its matrix: input ``(c, ...)`` feeds output ``(c, ...)`` only,
    with weight ``w_c``.  So every rule for linear layers applies, element
    by element: LRP-0 gives ``R_j = a_j w_c / z_j R_j`` (the bias share
    ``b_c / z_j`` absorbed), flat passes each output's relevance to its one
    input.  :meth:`with_weight` returns a batch norm of scale ``w`` and no
    bias (mean 0, variance 1, ``eps = 0``: exactly ``a w``).  Merge a batch
    norm into the Dense or Conv2d layer before it with :func:`lrp_ref.canonize`.

    PyTorch's ``weight`` and ``bias`` are ``gamma`` and ``beta`` here: the
    attributes ``weight`` and ``bias`` are the scale ``w`` and shift ``b`` of
    the affine map, as for every linear layer.

    Parameters
    ----------
    gamma, beta : array (C,)
        PyTorch's ``weight`` and ``bias`` (ones and zeros when ``affine=False``).
    running_mean, running_var : array (C,)
        The running statistics; the variance must be >= 0.
    eps : float >= 0, default 1e-5
        Added to the variance; ``running_var + eps`` must be > 0.
    dtype : float64 (default) or float32
    """

    gamma: Array
    beta: Array
    running_mean: Array
    running_var: Array
    eps: float = 1e-5
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    #: the rank of one sample's input: (C,) or (C, H, W)
    _rank: ClassVar[int] = 0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self._rank == 0:
            raise LayerParameterError("BatchNorm is the base class: use BatchNorm1d (N, C) or BatchNorm2d (N, C, H, W)")
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        shapes = {}
        for key in ("gamma", "beta", "running_mean", "running_var"):
            arr = _frozen(as_float_array(getattr(self, key), f"{name} {key} (C,)", dt, ndim=1, nonempty=True))
            object.__setattr__(self, key, arr)
            shapes[key] = arr.shape
        if len(set(shapes.values())) != 1:
            found = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
            raise ShapeError(f"{name} gamma, beta, running_mean and running_var must have one shape (C,); got {found}")
        eps = real_number(self.eps, f"{name} eps", LayerParameterError, 0.0)
        object.__setattr__(self, "eps", eps)
        var = self.running_var
        if np.any(var < 0):
            raise LayerParameterError(f"{name} running_var must be >= 0; found {int((var < 0).sum())} negative "
                                      f"value(s), the smallest {float(var.min()):.6g}")
        if np.any(var + dt.type(eps) <= 0):
            zero = np.flatnonzero(var + dt.type(eps) <= 0).tolist()
            raise LayerParameterError(f"{name} needs running_var + eps > 0; channel(s) {zero[:8]} have running_var = 0 "
                                      f"and eps = {eps:g}")
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.all(np.isfinite(self.weight)) and np.all(np.isfinite(self.bias))
        if not finite:
            raise NonFiniteError(f"{name}: the scale gamma / sqrt(running_var + eps) or the shift beta - mean * scale "
                                 f"overflows {dt}")

    @property
    def num_features(self) -> int:
        """C, the number of channels."""
        return int(self.gamma.shape[0])

    @property
    def weight(self) -> Array:  # type: ignore[override]
        """The per-channel scale ``w_c = gamma_c / sqrt(running_var_c + eps)`` (C,)."""
        with np.errstate(over="ignore"):
            return self.gamma / np.sqrt(self.running_var + self.dtype.type(self.eps))

    @property
    def bias(self) -> Array:  # type: ignore[override]
        """The per-channel shift ``b_c = beta_c - running_mean_c w_c`` (C,)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.beta - self.running_mean * self.weight

    def _per_channel(self, v: Array) -> Array:
        """``v`` (C,) shaped to broadcast against one sample (C, ...)."""
        return v.reshape(-1, *(1,) * (self._rank - 1))

    def n_parameters(self) -> int:
        """``2 C`` (gamma and beta), as PyTorch counts them; the running statistics are buffers."""
        return 2 * self.num_features

    def output_shape(self, input_shape: Shape) -> Shape:
        c = self.num_features
        if len(input_shape) != self._rank or input_shape[0] != c:
            expected = ", ".join([str(c), "H", "W"][: self._rank])
            raise ShapeError(f"{self.describe()} expects input of shape (N, {expected}); "
                             f"got (N, {', '.join(map(str, input_shape))})")
        element_count(input_shape, f"{self.describe()}: the input")
        return tuple(input_shape)

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        return a * self._per_channel(self.weight)

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # a diagonal map is its own transpose
        self.check_output(s, input_shape)
        return s * self._per_channel(self.weight)

    def with_weight(self, weight: Array) -> BatchNorm:
        w = self._checked_weight(weight)
        zeros, ones = np.zeros_like(w), np.ones_like(w)
        return type(self)(w, zeros, zeros, ones, eps=0.0, dtype=self.dtype)

    def bias_term(self) -> Array:
        return self._per_channel(self.bias)

    def describe(self) -> str:
        return f"{type(self).__name__}({self.num_features}, eps={self.eps:g})"


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm1d(BatchNorm):
    """:class:`BatchNorm` of inputs (N, C), as ``torch.nn.BatchNorm1d`` after a ``Linear`` layer."""

    _rank: ClassVar[int] = 1


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm2d(BatchNorm):
    """:class:`BatchNorm` of images (N, C, H, W), as ``torch.nn.BatchNorm2d``."""

    _rank: ClassVar[int] = 3
