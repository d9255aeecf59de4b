r"""Excitation Backprop: the marginal winning probability (MWP) and its contrastive variant (c-MWP).

Zhang et al. model top-down attention as a probabilistic Winner-Take-All
process.  A neuron ``a_k`` passes its winning probability to its children
``a_j`` (the inputs of the layer below) in proportion to their *excitatory*
input, ``a_j w_jk`` with ``w_jk >= 0``:

.. math::

    P(a_j \mid a_k) = Z_k\, a_j w_{jk}^+, \qquad Z_k = 1 \Big/ \sum_{j'} a_{j'} w_{j'k}^+,
    \qquad P(a_j) = \sum_k P(a_j \mid a_k)\, P(a_k).

The top layer's prior ``P(a_N)`` is one-hot on the explained output (the
target has probability 1).  The bias never enters: it is not a neuron.

**Relation to LRP-z+.**  Write ``R = P``.  On non-negative inputs
``(a_j w_jk)^+ = a_j w_jk^+``, so one MWP step *is* the z+ rule without bias,

.. math:: R_j = \sum_k \frac{a_j w_{jk}^+}{\sum_{j'} a_{j'} w_{j'k}^+} R_k ,

and MWP over a whole ReLU network equals ``explain(model, x, ZPlus(bias="none"))``
divided by the start relevance ``f_t(x)`` (every rule is linear in the start):
only the normalisation of the start differs (probability 1 instead of
``f_t(x)``).  ``tests/test_excitation.py`` checks this on dense, convolutional
and pooling networks.

**Probability is conserved** at every layer boundary: ``sum_j P(a_j) =
sum_k P(a_k)``, so each layer's MWP sums to one, except where a neuron that
holds probability has no excitatory input (``sum_j a_j w_jk^+ = 0``): its
conditional distribution is undefined and its probability mass is *dropped*
(Zhang et al. pass nothing down from it).  lrp_ref records the dropped mass
in the ledger as *absorbed*, so that ``sum_j P(a_j) + dropped = 1`` holds
exactly, layer by layer.

**c-MWP** (contrastive MWP).  For the target output ``o_t`` Zhang et al.
build a *dual* unit ``ō_t`` whose input weights are the negation of those of
``o_t`` (a "not this class" classifier) and subtract its MWP map from the
target's.  Since every MWP step below the top is linear in the probabilities
above, the difference can be taken at the layer below the top and propagated
once (the paper's single backward pass): the top layer passes

.. math::

    P_c(a_j) = \frac{a_j w_{jt}^+}{\sum_{j'} a_{j'} w_{j't}^+}
             - \frac{a_j (-w_{jt})^+}{\sum_{j'} a_{j'} (-w_{j't})^+}

and the layers below propagate ``P_c`` with the MWP rule.  The map sums to
zero at every layer (1 for the target minus 1 for its dual); the ledger books
the dual unit's probability (what is subtracted) as absorbed.  Zhang et al.
read the c-MWP map at an intermediate layer and keep its positive part for
display; :func:`explain_excitation` returns every layer's signed map
(``Explanation.layers``) and can start the propagation at a chosen layer.

**Checked against TorchRay** 1.0.0.2 (a PyTorch replication of the authors'
Caffe code; ``scripts/record_beyond_lrp.py``): MWP and c-MWP agree to 1e-15 on
ten digits of the shipped CNN, with max-pool ties routed to the first arg-max
(TorchRay uses PyTorch's gradient there; lrp_ref's default splits ties evenly).

**Non-negative activations only.**  MWP is a probability only if every
``a_j >= 0`` (ReLU outputs, pixels in [0, 1]).  Both rules refuse a layer input
with negative values, naming the minimum found.

Reference: J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff, "Top-down
Neural Attention by Excitation Backprop", ECCV 2016, Sec. 3 (the
probabilistic Winner-Take-All model and Excitation Backprop; contrastive
top-down attention); journal version IJCV 126 (2018) 1084-1102.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError, RuleParameterError
from .layers import LinearLayer
from .recipe import Propagation, per_sample_sum, propagate
from .rules import Rule

__all__ = ["ContrastiveExcitation", "ExcitationBackprop", "explain_excitation"]

Array = NDArray[Any]


def _require_non_negative(a: Array, rule: str) -> None:
    """Refuse a layer input with negative values: MWP is defined on non-negative activations."""
    if np.any(a < 0):
        n_neg = int(np.count_nonzero(a < 0))
        raise RuleParameterError(
            f"{rule} (Excitation Backprop) needs non-negative layer inputs (Zhang et al. define the winning "
            f"probability on ReLU outputs), but this layer's input has {n_neg} negative value(s), minimum "
            f"{float(a.min()):.6g}. Feed inputs in a non-negative range (pixels in [0, 1], as the shipped MNIST "
            "models take them), or start the propagation at a layer whose input comes out of a ReLU: "
            "lrp_ref.excitation.explain_excitation(model, x, down_to=INDEX)"
        )


def _excitatory(layer: LinearLayer, a: Array, R: Array, sign: float) -> Propagation:
    """One MWP step through the weights ``(sign w)+``: ``R_j = sum_k a_j (sign w_jk)+ / sum_j' a_j' (sign w_j'k)+ R_k``.

    Bias: none.  Stabiliser: none; a zero denominator drops (absorbs) its ``R_k``.
    """
    w = sign * layer.weight
    excitatory = layer.with_weight(np.maximum(w, 0))
    return propagate([(excitatory, a)], np.zeros_like(layer.bias_term()), R, 0.0)


@dataclass(frozen=True, repr=False)
class ExcitationBackprop(Rule):
    r"""Excitation Backprop (MWP): probability passed down by excitatory contributions only.

    .. math:: P(a_j) = \sum_k \frac{a_j w_{jk}^+}{\sum_{j'} a_{j'} w_{j'k}^+} P(a_k)

    Equal to :class:`~lrp_ref.rules.ZPlus` with ``bias="none"`` on
    non-negative inputs (see the module docstring).  Bias: not used.
    Stabiliser: none; where ``sum_j a_j w_jk^+ = 0`` the probability of ``k``
    is dropped and booked as absorbed.  Refuses negative layer inputs.
    Reference: Zhang et al. 2016 (ECCV), Sec. 3 (Excitation Backprop).
    """

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        _require_non_negative(a, "ExcitationBackprop")
        return _excitatory(layer, a, R, 1.0)


@dataclass(frozen=True, repr=False)
class ContrastiveExcitation(Rule):
    r"""The top layer of contrastive Excitation Backprop (c-MWP): the target's MWP minus its dual unit's.

    .. math:: P_c(a_j) = \sum_k \left( \frac{a_j w_{jk}^+}{\sum_{j'} a_{j'} w_{j'k}^+}
              - \frac{a_j (-w_{jk})^+}{\sum_{j'} a_{j'} (-w_{j'k})^+} \right) P(a_k)

    The dual unit of output ``k`` has the weights ``-w_jk``.  Meant for the
    output layer only, with the MWP rule (:class:`ExcitationBackprop`) below it.
    Bias: not used.  Absorbed: the dual unit's probability (which is
    subtracted) plus whatever either map drops at a zero denominator, so that
    the ledger balances with ``sum_j P_c(a_j) = 0`` when nothing is dropped.
    Refuses negative layer inputs.
    Reference: Zhang et al. 2016 (ECCV), Sec. 3 (contrastive top-down attention).
    """

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        _require_non_negative(a, "ContrastiveExcitation")
        target = _excitatory(layer, a, R, 1.0)
        dual = _excitatory(layer, a, R, -1.0)
        # the dual map passes sum R - dual.absorbed; subtracting it books that mass as absorbed
        return Propagation(target.relevance - dual.relevance,
                           target.absorbed + per_sample_sum(R) - dual.absorbed)


def explain_excitation(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    contrastive: bool = False,
    down_to: int | None = None,
) -> Any:
    """Excitation Backprop maps as probabilities: the target output starts with probability 1.

    Parameters
    ----------
    model : Sequential or Graph
        Every Dense, Conv2d and average pooling layer takes the MWP rule
        (:func:`lrp_ref.composites.excitation_backprop`).
    x : array (N, *input_shape)
    target : int or array (N,), optional
        The output unit whose MWP is computed; default the arg-max.
    contrastive : bool, default False
        c-MWP: the top layer subtracts the map of the target's dual unit.
    down_to : int, optional
        Start the map at layer ``down_to`` of a Sequential: the layers below
        are not explained, and ``relevance`` is the map at that layer's input
        (Zhang et al. read their maps at an intermediate layer; use it when
        the model input has negative values).

    Returns
    -------
    Explanation
        ``relevance`` and ``layers`` hold winning probabilities (each layer
        sums to ``1 - dropped`` for MWP, to ``0 - dropped`` for c-MWP; the
        ledger books the dropped mass as absorbed).  With ``down_to``,
        ``layers[0]`` is the map at layer ``down_to``'s input and the ledger
        covers the layers from ``down_to`` up.
    """
    from .composites import excitation_backprop
    from .explain import _as_batch, _targets, explain
    from .graph import Graph, Sequential

    if not isinstance(contrastive, bool):
        raise ArgumentError(f"contrastive must be True or False; got {contrastive!r}")
    if not isinstance(model, Graph):
        raise ArgumentError(f"model must be an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    x = _as_batch(x, model)
    if down_to is not None:
        if not isinstance(model, Sequential):
            raise ArgumentError("down_to needs a Sequential model (a chain of layers); "
                                f"got a {type(model).__name__}")
        if isinstance(down_to, bool) or not isinstance(down_to, (int, np.integer)) or not 0 <= down_to < len(model):
            raise ArgumentError(f"down_to must be a layer index in [0, {len(model) - 1}]; got {down_to!r}")
        x = model.forward_all(x)[int(down_to)]
        model = Sequential(list(model)[int(down_to):], metadata=model.metadata)
    output = model.forward(x)
    chosen = _targets(target, output)
    start = np.zeros_like(output)
    start[np.arange(len(output)), chosen] = 1.0  # the prior: the target wins with probability 1
    e = explain(model, x, excitation_backprop(contrastive), output_relevance=start)
    return replace(e, target=chosen)
