r"""Relative Attributing Propagation (RAP): relevant and irrelevant units, by their relative influence.

Nam et al. propagate the output score so that every unit ends up with a
*bi-polar* score: positive for units that matter more than the average unit
of their layer (relevant), negative for those that matter less (irrelevant).
The total is conserved at every layer.  Notation: ``z_jk = a_j w_jk`` the
contribution of input ``j`` to unit ``k`` (bias-free), ``z+ = max(z, 0)``,
``z- = min(z, 0)``; ``R+ = max(R, 0)``, ``R- = min(R, 0)``.

**1. Absolute influence normalisation (the output layer).**  The explained
score ``R_t = f_t(x)`` is shared among the last hidden units by the *size* of
their influence, whatever its sign:

.. math:: R_j = \sum_k \frac{|z_{jk}|}{\sum_{j'} |z_{j'k}|} R_k .

A unit that pushes the score down strongly is as influential as one that
pushes it up; after this step every last-layer unit has the sign of ``f_t(x)``.
(This is LRP-0 on the output layer, bias share redistributed, followed by
``R_j <- |R_j| sum R / sum |R|``; both forms agree for a single explained
output, which is how RAP starts.)

**2. Relevant/irrelevant separation and 3. uniform shifting (every other
linear layer).**  Positive relevance (relevant units) is passed down through
the positive contributions, negative relevance (irrelevant units) through the
negative ones, each normalised within its sign; in addition every unit's
relevance is shared among its *negative* contributions by the absolute
influence normalisation:

.. math::

    \tilde R_j = \sum_k \left( \frac{z_{jk}^+}{\sum_{j'} z_{j'k}^+} R_k^+
               + \frac{|z_{jk}^-|}{\sum_{j'} |z_{j'k}^-|} R_k^-
               + \frac{|z_{jk}^-|}{\sum_{j'} |z_{j'k}|} R_k \right).

The first two terms conserve ``sum_k R_k`` (up to ``D``, below); the third
(the negative part) adds ``E = sum_k R_k sum_j |z-_jk| / sum_j |z_jk|``, which
is taken back by a *uniform shift* over the units that received relevance,
``S = {j : some message to j is non-zero}``:

.. math:: R_j = \tilde R_j - \frac{E - D}{|S|} \quad (j \in S), \qquad R_j = 0 \quad (j \notin S).

``D`` is the relevance the first two terms cannot place (``R+_k`` of a unit
without positive contributions, ``R-_k`` of one without negative
contributions); the shift that restores conservation spreads it evenly as
well, as in the authors' implementation, whose shift is ``sum R~ - sum R``.
So ``sum_j R_j = sum_k R_k`` exactly, and a unit scores positive only if it
received more than the average share: that is where the negative
(irrelevant) scores come from.

**Choices where the paper leaves room** (stated, not hidden):

* Nam et al. write the rule for ReLU networks (``a >= 0``).  For inputs of
  either sign the contributions are split by their sign
  (``z+ = a+ w+ + a- w-``), which reduces to the paper's ``a w+`` for ``a >= 0``.
* The shift set ``S`` is "the units that received a non-zero message",
  decided from the signs of ``z_jk`` and ``R_k`` (not by testing the rounded
  sum against zero), so the fast and the reference implementation agree
  exactly on it.  The authors' code shifts the non-zero entries of
  ``\tilde R``, which is the same set unless messages cancel exactly.
* Negative relevance goes through the negative contributions
  (``|z-| / sum |z-|``).  The authors' released code does so on its
  convolutions; its fully connected layers route ``R-`` through ``z+``
  instead.  lrp_ref uses one rule for every layer.  Where a Dense layer
  receives negative relevance the two differ: on the shipped MLP (two hidden
  Dense layers) by up to 3% of the map's maximum (correlation 0.9998).
* Bias: not used below the output layer (the authors' code leaves it out
  too).  Pooling: max pooling winner-takes-all, average pooling LRP-0
  (proportional), as the authors' implementation does; ReLU and Flatten pass.
  The input layer takes RAP too unless the composite is given an
  ``input_rule`` (the authors use a zB-type rule on RGB images).
* Zero denominators: no stabiliser; relevance with nowhere to go within its
  sign (``D``) is spread by the shift.  Only if no unit of the layer receives
  anything is the relevance absorbed (booked in the ledger).  ``E`` and ``D``
  come from the denominators, so the ledger's balance check stays a check.

**Checked against the authors' released code** (run unmodified by
``scripts/record_beyond_lrp.py``; numbers recorded in
``tests/golden/beyond_lrp/``): on ten digits of the shipped CNN the maps agree
to 1e-15 of their maximum, with max-pool ties routed to the first arg-max as
PyTorch's gradient does (lrp_ref's default splits tied maxima evenly).
That check matters: this module was written without the paper's text at
hand, from its description of the three steps, and the released code is
what confirms the normalisations and the shift above, term by term.

RAP fits lrp_ref's per-layer rule interface: its two streams are the
positive and negative parts of one relevance tensor, separated and recombined
inside each step, and the shift is a per-sample operation on that step's
result.  So it runs through :func:`lrp_ref.explain` with the composite
:func:`lrp_ref.composites.rap` and gets the ledger for free.

Reference: W.-J. Nam, S. Gur, J. Choi, L. Wolf, S.-W. Lee, "Relative
Attributing Propagation: Interpreting the Comparative Contributions of
Individual Units in Deep Neural Networks", AAAI 2020, the section
"Relative Attributing Propagation" (arXiv:1904.00605 v4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .layers import LinearLayer
from .recipe import Propagation, per_sample_sum
from .rules import Rule

__all__ = ["RAP", "AbsoluteInfluence"]

Array = NDArray[Any]


def _quotient(R: Array, den: Array) -> Array:
    """``R / den`` where ``den != 0``, else 0 (that ``R`` is absorbed by the caller)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.divide(R, den, out=np.zeros_like(R), where=den != 0)


@dataclass(frozen=True, repr=False)
class AbsoluteInfluence(Rule):
    r"""RAP's output layer: relevance shared by the absolute contributions.

    .. math:: R_j = \sum_k \frac{|a_j w_{jk}|}{\sum_{j'} |a_{j'} w_{j'k}|} R_k

    Bias: not used.  Stabiliser: none; a unit without any contribution
    absorbs its relevance.  Reference: Nam et al. 2020 ("absolute
    influence normalisation"); see :mod:`lrp_ref.rap`.
    """

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        magnitude = layer.with_weight(np.abs(layer.weight))
        abs_a = np.abs(a)
        # step 1: A_k = sum_j |a_j w_jk|;  step 2: s = R / A;  steps 3-4: R_j = |a_j| sum_k |w_jk| s_k
        A = magnitude.linear(abs_a)
        s = _quotient(R, A)
        R_in = abs_a * magnitude.vjp(s, a.shape[1:])
        return Propagation(np.asarray(R_in), per_sample_sum(np.where(A == 0, R, 0)))


@dataclass(frozen=True, repr=False)
class RAP(Rule):
    r"""RAP on a hidden layer: relevant/irrelevant separation, then the uniform shift.

    .. math::

        \tilde R_j = \sum_k \frac{z_{jk}^+}{\sum_{j'} z_{j'k}^+} R_k^+
                   + \frac{|z_{jk}^-|}{\sum_{j'} |z_{j'k}^-|} R_k^-
                   + \frac{|z_{jk}^-|}{\sum_{j'} |z_{j'k}|} R_k ,
        \qquad R_j = \tilde R_j - \frac{E}{|S|}\,[j \in S]

    with ``z_jk = a_j w_jk``, ``E`` the relevance the third term adds and
    ``S`` the units that received a non-zero message (see :mod:`lrp_ref.rap`
    for the derivation and the choices made).  Conserves ``sum R`` exactly.
    Bias: not used.  Stabiliser: none; ``R+_k`` without positive or ``R-_k``
    without negative contributions is spread by the shift, and absorbed only
    if no unit of the layer receives a message.
    Reference: Nam et al. 2020 (AAAI), "Relative Attributing Propagation".
    """

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        shape = a.shape[1:]
        w = layer.weight
        w_pos, w_neg = layer.with_weight(np.maximum(w, 0)), layer.with_weight(np.minimum(w, 0))
        a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
        signed = bool(np.any(a_neg))  # after a ReLU the a- terms vanish: skip them
        # step 1: the sums of each sign, P_k = sum_j z+_jk >= 0 and N_k = sum_j |z-_jk| >= 0
        P = w_pos.linear(a_pos) + (w_neg.linear(a_neg) if signed else 0)
        N = -(w_neg.linear(a_pos) + (w_pos.linear(a_neg) if signed else 0))
        R_pos, R_neg = np.maximum(R, 0), np.minimum(R, 0)
        # step 2: s+ = R+ / P (relevant, through z+), s- = R- / N (irrelevant, through z-), s_abs = R / (P + N)
        s_pos, s_neg, s_abs = _quotient(R_pos, P), _quotient(R_neg, N), _quotient(R, P + N)
        # steps 3-4: R~_j = sum_k z+_jk s+_k + |z-_jk| (s-_k + s_abs_k)
        s_minus = s_neg + s_abs
        R_tilde = a_pos * (w_pos.vjp(s_pos, shape) - w_neg.vjp(s_minus, shape))
        if signed:
            R_tilde = R_tilde + a_neg * (w_neg.vjp(s_pos, shape) - w_pos.vjp(s_minus, shape))
        # the uniform shift: the third term adds E = sum_k R_k N_k / (P_k + N_k); the first two drop
        # D = sum R+ where P = 0 plus sum R- where N = 0; both are computed from the denominators
        excess = per_sample_sum(s_abs * N)
        dropped = per_sample_sum(np.where(P == 0, R_pos, 0) + np.where(N == 0, R_neg, 0))
        received = _receivers(layer, a, R)
        count = per_sample_sum(received.astype(a.dtype))
        shift = _quotient(excess - dropped, count)  # spread evenly over the units in S
        R_in = R_tilde - received * shift.reshape((-1,) + (1,) * len(shape))
        # nothing is absorbed unless no unit received anything (then E = 0 and all of R was dropped)
        absorbed = np.where(count == 0, dropped - excess, 0)
        return Propagation(np.asarray(R_in), absorbed)


def _receivers(layer: LinearLayer, a: Array, R: Array) -> Array:
    """Boolean, input-shaped: ``j`` receives a non-zero RAP message from some ``k``.

    ``z+_jk > 0`` and ``R_k > 0`` (first term), or ``z-_jk < 0`` and ``R_k != 0``
    (second and third terms).  Counted through 0/1 weights, so the test is
    exact (sums of non-negative integers).
    """
    shape = a.shape[1:]
    w = layer.weight
    up, down = layer.with_weight((w > 0).astype(a.dtype)), layer.with_weight((w < 0).astype(a.dtype))
    relevant, any_r = (R > 0).astype(a.dtype), (R != 0).astype(a.dtype)
    positive_in, negative_in = a > 0, a < 0
    # z+_jk > 0: (a_j > 0, w_jk > 0) or (a_j < 0, w_jk < 0);  z-_jk < 0: the other two sign pairs
    hits = (positive_in * (up.vjp(relevant, shape) + down.vjp(any_r, shape))
            + negative_in * (down.vjp(relevant, shape) + up.vjp(any_r, shape)))
    return np.asarray(hits > 0)
