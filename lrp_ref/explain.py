"""explain(): the forward sweep, the start relevance, and the backward sweep of LRP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import as_float_array, is_int, real_array, require_finite
from ._start import Start, ancestors, check_output_start, plan_start
from .composites import Composite, TopLayerComposite, resolve_rules
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
        Relevance of every tensor of the forward sweep up to the start:
        index 0 the input, index ``i + 1`` the output of node ``i`` (layer
        ``i`` of a Sequential), the last one the start relevance.  For a
        Sequential, ``layers[i]`` belongs to the activations entering layer
        ``i``; in a graph, a tensor that feeds several nodes holds the sum of
        what they pass back.  A start at node ``s`` (``start_at``) ends the
        tuple at its output, ``layers[s + 1]``: the tensors above the start
        carry no relevance of this explanation, and are left out rather than
        filled with zeros that would look computed.  Below the start, the
        tensors of nodes the start does not depend on (another branch of a
        graph) hold zeros: no relevance reaches them.
    activations : tuple of arrays
        The forward activations, indexed the same way.
    output : array (N, n_outputs)
        The model output.
    target : array (N,) of int, or None
        The explained output neuron per sample (None with ``output_relevance``
        or ``start_at``).
    rules : tuple of rules
        The rule assigned to each layer (every node, also above a start),
        with every convention filled in.
    ledger : :class:`~lrp_ref.ledger.Ledger`
        Where the relevance went, layer by layer, from the start down.
    start_at : str or None
        Name of the node at whose output the sweep started (``"3"`` for layer
        3 of a Sequential); None for the model output (the default start).
    description : str
        What was explained, in words (e.g. ``"neuron (3, 4, 5) (flat 917) of
        the output of layer 3 (Conv2d(...)), start = its activation"``).
    """

    relevance: Array
    layers: tuple[Array, ...]
    activations: tuple[Array, ...]
    output: Array
    target: Array | None
    rules: tuple[Rule, ...]
    ledger: Ledger
    start_at: str | None = None
    description: str = "the model output"

    @property
    def score(self) -> Array:
        """Total start relevance per sample: f_target(x) by default, the chosen activation(s) with start_at."""
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
    if t.dtype == object and t.size and all(is_int(v) for v in t.ravel()):  # Python ints beyond int64
        raise TargetError(f"target must lie in [0, {n_out - 1}] for a model with {n_out} outputs; got {target!r}")
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
    *,
    start_at: str | int | None = None,
    neuron: Any = None,
    channel: int | None = None,
    start_relevance: Any = None,
) -> Explanation:
    """Explain the model output, or any neuron, channel or layer boundary, for a batch ``x`` with LRP.

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
        relevance at the output (lrp_ref: the target output's value, others
        0; zennit: 1).  A start at ``start_at`` is always the activation
        (the seed's recipe), whatever the profile; for a start of 1, pass
        ``start_relevance`` (e.g. the neuron's one-hot mask).
    start_at : str or int, optional
        Start the backward sweep at the output tensor of this node instead of
        the model output: a node name (``"relu1"``; ``"3"`` for layer 3 of a
        Sequential) or a node index.  Only the start node and the nodes it
        depends on are swept.  Give exactly one of the next three.
    neuron : int, tuple of ints or bool array, optional
        With ``start_at``: the neuron(s) whose activation is the start, every
        other entry zero (``R = a * [selected]``): a flat index into the
        node's per-sample output shape, an index tuple, or a boolean mask of
        that shape.
    channel : int, optional
        With ``start_at``: start from the whole channel ``c`` of a
        (C, H, W) output (its activations, others zero).
    start_relevance : array (N, *node_output_shape), optional
        With ``start_at``: an explicit start relevance.

    Returns
    -------
    Explanation
        Relevance at the input and every layer boundary up to the start, and
        the ledger, whose start is the start relevance summed per sample
        (``f_target(x)``, or the chosen neuron's activation).

    Raises
    ------
    ShapeError, TargetError, RuleAssignmentError, NonFiniteError
        On inputs that do not fit (``x`` and ``output_relevance`` must hold
        real numbers: bools, strings and complex values are refused, never
        converted); and if any relevance becomes NaN or inf.  A ``start_at``
        that names no node, or a neuron or channel out of range, is a
        TargetError.
    ArgumentError
        If ``model`` is not a Graph (or Sequential) or ``profile`` neither a name nor a Profile;
        for ``target`` or ``output_relevance`` with ``start_at``, and unless exactly one of
        ``neuron``, ``channel``, ``start_relevance`` comes with ``start_at`` (and none without);
        for a method with its own output-layer rule (c-MWP, RAP) and a ``start_at`` below that layer.

    Examples
    --------
    The seed's recipe for an intermediate neuron, "select one neuron from the
    input of ReLU, keep all other inputs zero" (layer 3 of the shipped CNN is
    the convolution before a ReLU)::

        e = explain(model, x, rules, start_at=3, neuron=(5, 2, 2))
        e.ledger.check_conservation()   # sum R_input + absorbed = that neuron's value
    """
    if not isinstance(model, Graph):
        raise ArgumentError(f"model must be an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    if not isinstance(profile, (str, Profile)):
        raise ArgumentError(f"profile must be a profile name ({', '.join(PROFILES)}) or a Profile; "
                            f"got {type(profile).__name__}")
    x = _as_batch(x, model)
    start: Start | None = None
    if start_at is None:
        check_output_start(neuron, channel, start_relevance)
    else:
        start = plan_start(model, x.shape, start_at, neuron, channel, start_relevance, target, output_relevance)
    if isinstance(rules, (list, tuple)):
        for i, entry in enumerate(rules):
            if entry is not None and not isinstance(entry, Rule):
                raise RuleAssignmentError(f"rules[{i}] must be a Rule or None (the layer's default); "
                                          f"got {type(entry).__name__}")
    if start is not None and isinstance(rules, TopLayerComposite):
        _check_top_rule_reached(rules, model, start)
    conventions = get_profile(profile)
    layer_rules = [conventions.resolve(rule, layer)
                   for rule, layer in zip(resolve_rules(rules, model, conventions.default_rule), model)]

    activations = model.forward_all(x)
    output = activations[-1]
    top = len(model) - 1 if start is None else start.node  # the node whose output the sweep starts from
    if start is not None:
        R, chosen = start.relevance(activations), None
    elif output_relevance is not None:
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

    # the backward sweep: from the start node down to the input; tensor t's relevance collects
    # what every node reading t passes back (one node in a chain, several where a graph fans out)
    relevances: list[Array | None] = [None] * (top + 2)
    relevances[-1] = R
    reached = ancestors(model, top) if start is not None else None
    balances = []
    sums = BoundarySums()  # each relevance array's per-sample sums for the ledger, taken once
    for i in reversed(range(top + 1)):
        layer, rule = model[i], layer_rules[i]
        if reached is not None and i not in reached:  # another branch: the start does not depend on it
            relevances[i + 1] = np.zeros_like(activations[i + 1])
            balances.append(_unreached(i, model, x.shape[0]))
            continue
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
        start_label="f(x) (start)" if start is None else f"start relevance at {start.name!r}",
    )
    return Explanation(
        relevance=final[0],
        layers=tuple(final),
        activations=tuple(activations),
        output=output,
        target=chosen,
        rules=tuple(layer_rules),
        ledger=ledger,
        start_at=None if start is None else start.name,
        description=_output_description(chosen, conventions) if start is None else start.description,
    )


def _check_top_rule_reached(rules: TopLayerComposite, model: Graph, start: Start) -> None:
    """Refuse a start below the output layer for a method whose output layer has its own rule (c-MWP, RAP).

    The sweep from ``start_at`` never reaches that layer, so the map would be
    that of the rule below it alone, under the method's name.
    """
    if rules.top == rules.rest:
        return
    assigned = rules.assign(model)
    top = next(i for i in reversed(range(len(model))) if assigned[i] is rules.top)
    if top > start.node:
        raise ArgumentError(
            f"{rules.name} is defined from the output layer: it puts {rules.top!r} on {_where(model, top)} and "
            f"{rules.rest!r} below it; start_at={start.name!r} lies below that layer, so the sweep would skip it and "
            f"give {rules.rest!r}'s map alone, not {rules.name}'s. Explain an output neuron (target=), or pass a "
            "list of rules to start inside the model"
        )


def _unreached(i: int, model: Graph, n: int) -> LayerBalance:
    """The ledger line of a node the start does not depend on: nothing in, nothing out."""
    zero = np.zeros(n, dtype=model.dtype)
    return LayerBalance(i, model.label(i), "(the start does not depend on it)", zero, zero, zero, zero)


def _output_description(chosen: Array | None, conventions: Profile) -> str:
    """How a start at the model output is described: the explained output neuron(s), or the given relevance."""
    if chosen is None:
        return "the given output relevance"
    neurons = f"output neuron {int(chosen[0])}" if len(set(chosen.tolist())) == 1 else \
        f"output neurons {chosen.tolist()} (one per sample)"
    value = "its value" if conventions.start == "value" else "1"
    return f"{neurons}, start = {value} (profile {conventions.name})"
