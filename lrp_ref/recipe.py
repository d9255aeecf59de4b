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

from . import _threads
from .layers import LinearLayer

__all__ = ["Propagation", "StabilizerForm", "per_sample_sum", "propagate", "sign_terms", "stabilize"]

Array = NDArray[Any]
#: How a stabiliser is added to a denominator (see :func:`stabilize`).
StabilizerForm = Literal["sign", "add", "zeros"]
Term = tuple[LinearLayer, Array]


def stabilize(z: Array, eps: float, form: StabilizerForm = "sign") -> Array:
    """Move the denominator ``z`` away from zero by ``eps`` (see the module docstring for ``form``).

    Computed in ``z``'s dtype: in a float32 run ``eps`` is rounded to float32
    once and no float64 temporary is made.  Returns a new array (``z`` itself
    when ``eps == 0``).
    """
    if eps == 0:
        return z
    e = z.dtype.type(eps)
    if form == "sign":
        # z + eps * sign(z) with sign(0) = +1, block by block (on the threads of _threads)
        out = np.empty_like(z)

        def block(index: tuple[slice, ...]) -> None:
            zb = z[index] if index else z
            np.add(zb, np.where(zb >= 0, e, -e), out=out[index] if index else out)

        _threads.run_blocks(block, z.shape)
        return out
    if form == "add":
        return _threads.elementwise(np.add, z, e)
    if form == "zeros":
        return np.where(z == 0, e, z)
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
    """Sum over everything but the batch axis (``x.reshape(N, -1).sum(axis=1)``, whole samples per thread)."""
    return _threads.per_sample_sum(x)


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
    rules that use the layer unmodified; or one sample's, shape (1, ...), for
    the rules whose denominator does not depend on the input): step 1 is then
    skipped.

    The steps work in place on the arrays they create (never on ``z``, ``R``
    or the inputs): the results are bit-identical to the plain expressions.
    """
    input_shape = terms[0][1].shape[1:]
    # step 1: modified forward pass, z_k = sum_t sum_j a_tj w_tjk + b'_k (summed in place, in the order of the terms)
    if z is None:
        z = terms[0][0].linear(terms[0][1])
        for layer, a in terms[1:]:
            z = _in_place(np.add, z, layer.linear(a))
        z = _in_place(np.add, z, bias)
    zs = stabilize(z, eps, form)
    # ledger: the share of the bias and stabiliser terms, b'_k + (zs_k - z_k), taken before zs is overwritten;
    # without a stabiliser zs - z is 0 wherever z is finite (a finite per-sample sum of z says every z_k is)
    if zs is not z or not np.all(np.isfinite(per_sample_sum(z))):
        shares = _in_place(np.add, _threads.elementwise(np.subtract, zs, z), bias)
    else:
        shares = bias
    # step 2: element-wise division s_k = R_k / z_k (0 where the denominator is exactly 0);
    # a subnormal denominator can overflow s: explain() reports that as NonFiniteError
    any_zero = not np.all(zs)  # (no (N, ...) mask unless needed)
    zero = zs == 0 if any_zero else np.zeros((), bool)
    if mask is not None:
        R = np.where(mask, R, 0)
    with np.errstate(over="ignore", invalid="ignore"):
        if any_zero:
            s = np.divide(R, zs, out=np.zeros(np.broadcast_shapes(R.shape, zs.shape), zs.dtype), where=~zero)
        elif zs is not z and zs.shape == R.shape and zs.dtype == np.result_type(R, zs):
            s = _threads.elementwise(np.divide, R, zs, out=zs)  # zs is this call's own array: divided in place
        else:
            s = _threads.elementwise(np.divide, R, zs, out=np.empty(np.broadcast_shapes(R.shape, zs.shape), zs.dtype))
        # step 3: backward pass c_tj = sum_k w_tjk s_k;  step 4: R_j = sum_t a_tj c_tj
        R_in = None
        for layer, a in terms:
            c = layer.vjp(s, input_shape)
            part = _in_place(np.multiply, c, a) if _fresh(c, s, a) else _threads.elementwise(np.multiply, a, c)
            R_in = part if R_in is None else _in_place(np.add, R_in, part)
        absorbed = per_sample_sum(_in_place(np.multiply, shares, s) if shares is not bias
                                  else _threads.elementwise(np.multiply, s, bias))
        if any_zero:  # the relevance of zero denominators is absorbed whole
            absorbed = absorbed + per_sample_sum(np.where(zero, R, 0))
    return Propagation(np.asarray(R_in), absorbed)


def _in_place(op: np.ufunc, x: Array, y: Array) -> Array:
    """``op(x, y)``, written into ``x`` when ``x`` is a writable array of the result's shape and dtype.

    Only for ``x`` that the caller computed itself (no one else holds it).  Bit-identical to ``op(x, y)``:
    only where the result is stored changes.
    """
    if (isinstance(x, np.ndarray) and x.flags.writeable and x.shape == np.broadcast_shapes(x.shape, np.shape(y))
            and x.dtype == np.result_type(x, y) and not np.may_share_memory(x, y)):
        return _threads.elementwise(op, x, y, out=x)
    return _threads.elementwise(op, x, y)


def _fresh(c: Array, s: Array, a: Array) -> bool:
    """Whether the adjoint's output ``c`` is its own array (not ``s``, ``a``, or read-only): step 4 may reuse it."""
    return bool(c.flags.writeable) and not np.may_share_memory(c, s) and not np.may_share_memory(c, a)


def sign_terms(layer: LinearLayer, a: Array, positive: bool, split: Literal["contributions", "weights"]) -> list[Term]:
    """The contributions of one sign, as (modified layer, modified input) terms.

    ``split="contributions"``: ``(a w)+ = a+ w+ + a- w-`` (positive) or
    ``(a w)- = a+ w- + a- w+`` (negative), the contributions ``a_j w_jk`` split by
    their sign.  ``split="weights"``: ``a w+`` or ``a w-``, only the weights
    split and the inputs kept as they are (Captum).  Terms whose input is
    identically zero (``a-`` after a ReLU) are left out.
    """
    w = layer.weight
    if split == "weights":
        return [(layer._derived(np.maximum(w, 0) if positive else np.minimum(w, 0)), a)]
    if a.size and a.min() >= 0:
        # the usual case after a ReLU: a+ = a and a- = 0, whose term is left out (as below); a min() >= 0
        # reads a once instead of building a+, a- and testing a- (NaN fails the test and takes the general path)
        return [(layer._derived(np.maximum(w, 0) if positive else np.minimum(w, 0)), a)]
    a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
    w_pos, w_neg = layer._derived(np.maximum(w, 0)), layer._derived(np.minimum(w, 0))
    pairs = [(w_pos, a_pos), (w_neg, a_neg)] if positive else [(w_neg, a_pos), (w_pos, a_neg)]
    kept = [(lay, inp) for lay, inp in pairs if np.any(inp)]
    return kept or [pairs[0]]
