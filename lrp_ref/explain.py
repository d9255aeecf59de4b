"""explain(): the forward sweep, the start relevance, and the backward sweep of LRP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import as_float_array, real_array, require_finite
from .composites import Composite, resolve_rules
from .errors import ArgumentError, LrpRefError, NonFiniteError, RuleAssignmentError, ShapeError, TargetError
from .graph import Graph, Sequential
from .ledger import BoundarySums, LayerBalance, Ledger
from .profiles import PROFILES, Profile, get_profile
from .rules import Rule

__all__ = ["Explanation", "explain"]

Array = NDArray[Any]


@dataclass(frozen=True)
class Explanation:
    """The result of :func:`explain`.

    Attributes
    ----------
    relevance : array, shape of x
        Input relevance ``R`` (``layers[0]``).
    layers : tuple of arrays
        Relevance of every tensor of the forward sweep: index 0 the input,
        index ``i + 1`` the output of node ``i`` (layer ``i`` of a
        Sequential), the last one the start relevance.  For a Sequential,
        ``layers[i]`` belongs to the activations entering layer ``i``; in a
        graph, a tensor that feeds several nodes holds the sum of what they
        pass back.
    activations : tuple of arrays
        The forward activations, indexed the same way.
    output : array (N, n_outputs)
        The model output.
    target : array (N,) of int, or None
        The explained output neuron per sample (None with ``output_relevance``).
    rules : tuple of rules
        The rule used for each layer, with every convention filled in.
    ledger : :class:`~lrp_ref.ledger.Ledger`
        Where the relevance went, layer by layer.
    """

    relevance: Array
    layers: tuple[Array, ...]
    activations: tuple[Array, ...]
    output: Array
    target: Array | None
    rules: tuple[Rule, ...]
    ledger: Ledger

    @property
    def score(self) -> Array:
        """Total start relevance per sample: f_target(x) for the default start."""
        return self.ledger.start


def _as_batch(x: Any, model: Graph) -> Array:
    # real numbers only: a complex x would lose its imaginary part, a bool or string x is a mistake
    x = real_array(x, "x (the input batch)")
    if x.ndim < 2:
        raise ShapeError(f"x must be a batch of shape (N, ...) with a sample axis first; got shape {x.shape}")
    if x.shape[0] == 0:
        raise ShapeError("x is an empty batch (N = 0)")
    try:
        model.shapes(x.shape[1:])
    except ShapeError as exc:
        raise ShapeError(f"x of shape {x.shape} does not fit the model: {exc}") from None
    require_finite(x, "input x")
    if x.dtype == model.dtype:
        return x
    return as_float_array(x, f"input x (cast to the model dtype {model.dtype})", model.dtype)


def _targets(target: Any, output: Array) -> Array:
    n = output.shape[0]
    if output.ndim != 2:
        raise TargetError(
            f"a target selects one of the model's outputs (N, n_outputs), but the output has shape {output.shape}; "
            "pass output_relevance instead"
        )
    n_out = output.shape[1]
    if target is None:
        return np.argmax(output, axis=1)
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TargetError(f"target must be an int or an array of ints; got {target!r}")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise TargetError(f"target must be an int or have shape ({n},) (one per sample); got shape {t.shape}")
    if np.any((t < 0) | (t >= n_out)):
        raise TargetError(f"target must lie in [0, {n_out - 1}] for a model with {n_out} outputs; got {t.tolist()}")
    return t.astype(np.int64)


def _where(model: Graph, i: int) -> str:
    """Node ``i`` in a message: ``layer 3 (Conv2d(...))``, or ``node 'conv1' (Conv2d(...))`` in a graph."""
    if isinstance(model, Sequential):
        return f"layer {i} ({model[i].describe()})"
    return f"node {model.nodes[i].name!r} ({model[i].describe()})"


def explain(
    model: Graph,
    x: Any,
    rules: Rule | Composite | Sequence[Rule | None],
    target: Any = None,
    output_relevance: Any = None,
    profile: str | Profile = "lrp_ref",
) -> Explanation:
    """Explain the model output for a batch ``x`` with Layer-wise Relevance Propagation.

    Parameters
    ----------
    model : Graph or Sequential
    x : array (N, *input_shape)
        Cast to the model's dtype (float64 unless the model was cast).
    rules : Rule, Composite or list
        One rule for every layer it applies to, a composite, or a list with
        one rule (or None for the default) per layer (per node of a graph,
        in its order).
    target : int or array (N,), optional
        Output neuron to explain; default the arg-max of each sample's output.
    output_relevance : array (N, *output_shape), optional
        Start relevance to propagate instead of the default (then ``target``
        must be None).
    profile : str or Profile, default "lrp_ref"
        Convention profile (:mod:`lrp_ref.profiles`): fills in every rule
        convention left unset, the rule of max pooling, and the start
        relevance (lrp_ref: the target output's value, others 0).

    Returns
    -------
    Explanation
        Relevance at the input and every layer boundary, and the ledger.

    Raises
    ------
    ShapeError, TargetError, RuleAssignmentError, NonFiniteError
        On inputs that do not fit (``x`` and ``output_relevance`` must hold
        real numbers: bools, strings and complex values are refused, never
        converted); and if any relevance becomes NaN or inf.
    ArgumentError
        If ``model`` is not a Graph (or Sequential) or ``profile`` neither a name nor a Profile.
    """
    if not isinstance(model, Graph):
        raise ArgumentError(f"model must be an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    if not isinstance(profile, (str, Profile)):
        raise ArgumentError(f"profile must be a profile name ({', '.join(PROFILES)}) or a Profile; "
                            f"got {type(profile).__name__}")
    x = _as_batch(x, model)
    if isinstance(rules, (list, tuple)):
        for i, entry in enumerate(rules):
            if entry is not None and not isinstance(entry, Rule):
                raise RuleAssignmentError(f"rules[{i}] must be a Rule or None (the layer's default); "
                                          f"got {type(entry).__name__}")
    conventions = get_profile(profile)
    layer_rules = [conventions.resolve(rule, layer)
                   for rule, layer in zip(resolve_rules(rules, model, conventions.default_rule), model)]

    activations = model.forward_all(x)
    output = activations[-1]
    if output_relevance is not None:
        if target is not None:
            raise TargetError("give either target or output_relevance, not both")
        R = real_array(output_relevance, "output_relevance")
        if R.shape != output.shape:
            raise ShapeError(f"output_relevance must have the output's shape {output.shape}; got {R.shape}")
        R = as_float_array(R, "output_relevance", model.dtype)
        chosen = None
    else:
        chosen = _targets(target, output)
        R = conventions.start_relevance(output, chosen)

    # the backward sweep: from the last node down to the input; tensor t's relevance collects
    # what every node reading t passes back (one node in a chain, several where a graph fans out)
    relevances: list[Array | None] = [None] * len(activations)
    relevances[-1] = R
    balances = []
    sums = BoundarySums()  # each relevance array's per-sample sums for the ledger, taken once
    for i in reversed(range(len(model))):
        layer, rule = model[i], layer_rules[i]
        R_out = relevances[i + 1]
        assert R_out is not None  # every node's output feeds a later node (Graph checks it)
        R = R_out
        a = model.pack(i, activations)  # a merge layer's inputs, packed into one
        try:
            step = rule.relevance(layer, a, R, z=activations[i + 1])  # z: reused by the rules that can
        except LrpRefError as exc:  # say where it happened
            raise type(exc)(f"{_where(model, i)} with rule {rule!r}: {exc}") from None
        balance = LayerBalance.from_arrays(i, model.label(i), repr(rule), R, step.relevance, step.absorbed, sums)
        # a finite per-sample sum of |R_in| + |absorbed| means every value is finite: the full test only when not
        if not (np.all(np.isfinite(balance.scale))
                or (np.all(np.isfinite(step.relevance)) and np.all(np.isfinite(step.absorbed)))):
            raise NonFiniteError(
                f"{_where(model, i)} with rule {rule!r} produced NaN or inf relevance; "
                "use a stabiliser (epsilon > 0) or a rule that suits this layer"
            )
        balances.append(balance)
        for t, part in zip(model.sources(i), model.unpack(i, step.relevance, activations)):
            previous = relevances[t]
            relevances[t] = part if previous is None else previous + part

    balances.reverse()
    assert all(r is not None for r in relevances)
    final: list[Array] = relevances  # type: ignore[assignment]
    ledger = Ledger(
        tuple(balances),
        start=final[-1].reshape(x.shape[0], -1).sum(axis=1),
        input_relevance=final[0].reshape(x.shape[0], -1).sum(axis=1),
        dtype=model.dtype,
    )
    return Explanation(
        relevance=final[0],
        layers=tuple(final),
        activations=tuple(activations),
        output=output,
        target=chosen,
        rules=tuple(layer_rules),
        ledger=ledger,
    )
