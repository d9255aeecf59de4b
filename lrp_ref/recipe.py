r"""The LRP recipe that every rule for linear layers is written with.

Notation (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
Overview"): ``a_j`` is the layer input, ``w_jk`` the weight from input ``j`` to
output ``k``, ``b_k`` the bias, ``R_k`` the relevance arriving from above.

A rule is the same four steps applied to one or more modified copies of the
layer (the tutorial's recipe):

.. code-block:: text

    z = sum_t linear_t(a_t) + b'      step 1: modified forward pass
    s = R / stabilize(z)              step 2: element-wise division
    c_t = vjp_t(s)                    step 3: backward pass of each modified layer
    R_in = sum_t a_t * c_t            step 4: element-wise product

**Stabilisers** (``form``):

* ``"sign"``: ``z + eps * sign(z)`` with ``sign(0) = +1``, which moves ``z``
  away from zero without changing its sign (lrp_ref, zennit, Captum, lrp_toolbox);
* ``"add"``: ``z + eps`` (the Montavon et al. tutorial);
* ``"zeros"``: ``z`` where ``z != 0``, ``eps`` where ``z == 0`` (iNNvestigate's
  rules other than epsilon).

Where a denominator is exactly zero (only possible with ``eps = 0``) the
quotient is defined as 0: that relevance is *absorbed*, never turned into NaN.

**Absorbed relevance.** The part of a denominator that does not come from the
inputs (the bias term ``b'`` and the stabiliser) takes its share of ``R_k``:
``absorbed = sum_k s_k (b'_k + stab_k)`` plus every ``R_k`` whose denominator
is zero.  :func:`propagate` returns it per sample, computed from the
denominators and not as ``R_out - R_in``, so that the ledger
(:mod:`lrp_ref.ledger`) can check ``sum R_out == sum R_in + absorbed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .layers import LinearLayer

__all__ = ["Propagation", "StabilizerForm", "per_sample_sum", "propagate", "sign_terms", "stabilize"]

Array = NDArray[Any]
#: How a stabiliser is added to a denominator (see :func:`stabilize`).
StabilizerForm = Literal["sign", "add", "zeros"]
Term = tuple[LinearLayer, Array]


def stabilize(z: Array, eps: float, form: StabilizerForm = "sign") -> Array:
    """Move the denominator ``z`` away from zero by ``eps`` (see the module docstring for ``form``)."""
    if eps == 0:
        return z
    if form == "sign":
        return z + np.where(z >= 0, eps, -eps).astype(z.dtype)
    if form == "add":
        return z + np.asarray(eps, dtype=z.dtype)
    if form == "zeros":
        return np.where(z == 0, np.asarray(eps, dtype=z.dtype), z)
    raise ValueError(f"stabiliser form must be 'sign', 'add' or 'zeros'; got {form!r}")


@dataclass(frozen=True)
class Propagation:
    """What a rule returns for one layer.

    Attributes
    ----------
    relevance : array, shape of the layer input (N, ...)
        ``R_j``, the relevance passed to the layer below.
    absorbed : array (N,)
        Relevance taken by bias terms, stabilisers and zero denominators,
        computed from the rule's denominators (not as ``R_out - R_in``).
    """

    relevance: Array
    absorbed: Array

    def __add__(self, other: Propagation) -> Propagation:
        return Propagation(self.relevance + other.relevance, self.absorbed + other.absorbed)

    def scaled(self, factor: float) -> Propagation:
        """Both parts times ``factor`` (alpha and beta of the alpha-beta rule)."""
        return Propagation(factor * self.relevance, factor * self.absorbed)


def per_sample_sum(x: Array) -> Array:
    """Sum over everything but the batch axis."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


def propagate(
    terms: list[Term],
    bias: Array,
    R: Array,
    eps: float,
    form: StabilizerForm = "sign",
    mask: Array | None = None,
    z: Array | None = None,
) -> Propagation:
    """The four LRP steps for the denominator ``sum_t linear_t(a_t) + bias``.

    ``terms`` pairs a (modified) layer with the (modified) input it sees; all
    inputs have the shape of the layer input.  ``mask`` (output-shaped,
    boolean) optionally restricts the rule to some outputs: the others pass
    nothing down here (another call handles them).  ``z``, if given, is that
    denominator already computed (the forward sweep's pre-activation, for the
    rules that use the layer unmodified): step 1 is then skipped.
    """
    input_shape = terms[0][1].shape[1:]
    # step 1: modified forward pass, z_k = sum_t sum_j a_tj w_tjk + b'_k
    if z is None:
        z = sum(layer.linear(a) for layer, a in terms) + bias
    zs = stabilize(z, eps, form)
    # step 2: element-wise division s_k = R_k / z_k (0 where the denominator is exactly 0);
    # a subnormal denominator can overflow s: explain() reports that as NonFiniteError
    zero = zs == 0
    if mask is not None:
        R = np.where(mask, R, 0)
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.divide(R, zs, out=np.zeros_like(zs), where=~zero)
        # step 3: backward pass c_tj = sum_k w_tjk s_k;  step 4: R_j = sum_t a_tj c_tj
        R_in = sum(a * layer.vjp(s, input_shape) for layer, a in terms)
        # ledger: the share of the bias and stabiliser terms, and of the zero denominators
        absorbed = per_sample_sum(s * (bias + (zs - z))) + per_sample_sum(np.where(zero, R, 0))
    return Propagation(np.asarray(R_in), absorbed)


def sign_terms(layer: LinearLayer, a: Array, positive: bool, split: Literal["contributions", "weights"]) -> list[Term]:
    """The contributions of one sign, as (modified layer, modified input) terms.

    ``split="contributions"``: ``(a w)+ = a+ w+ + a- w-`` (positive) or
    ``(a w)- = a+ w- + a- w+`` (negative), the contributions ``a_j w_jk`` split by
    their sign.  ``split="weights"``: ``a w+`` or ``a w-``, only the weights
    split and the inputs kept as they are (Captum).  Terms whose input is
    identically zero (``a-`` after a ReLU) are left out.
    """
    w = layer.weight
    w_pos, w_neg = layer.with_weight(np.maximum(w, 0)), layer.with_weight(np.minimum(w, 0))
    if split == "weights":
        return [(w_pos if positive else w_neg, a)]
    a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
    pairs = [(w_pos, a_pos), (w_neg, a_neg)] if positive else [(w_neg, a_pos), (w_pos, a_neg)]
    kept = [(lay, inp) for lay, inp in pairs if np.any(inp)]
    return kept or [pairs[0]]
