"""lrp_ref under the "zennit" profile against zennit itself, live, in float64.

Every zennit rule (through a ``LayerMapComposite``: activations ``Pass``, average pooling
``Norm(stabilizer)``, Linear/Conv the rule; ZBox on the first layer with Epsilon above) and
every named zennit composite, with default and non-default parameters, on random networks
(Dense with biases; Conv2d with stride, padding, dilation and groups; max pooling; average
pooling) and on non-negative U(0, 1) and mixed-sign N(0, 1) inputs.  Agreement:
``assert_relevance_close(zennit, lrp_ref, rtol=1e-12)``, relative to max|R|.

The start relevance is the same on both sides: one-hot of the target (the "zennit" profile's
start, so lrp_ref gets no ``output_relevance``), or a random start passed to both.

Excluded on purpose (see test_zero_denominator_is_where_the_two_part): a rule whose stabiliser
is 0 on a layer where a denominator is exactly 0.  zennit divides by zero there (inf/NaN);
lrp_ref absorbs that relevance and records it in the ledger.  No such case is in the tables:
every zennit rule below has a positive stabiliser.

Set LRP_REF_RESIDUALS=path to collect the worst residual per rule into a JSON file.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zennit")

import peers  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import catalog, vectors  # noqa: E402
from lrp_ref import composites as C  # noqa: E402
from lrp_ref import layers as L  # noqa: E402
from lrp_ref import rules as R  # noqa: E402

KINDS = ("pos", "mixed")
NET_INPUTS = [pytest.param(net, kind, id=f"{net}-{kind}") for net in peers.NETS for kind in KINDS]


@pytest.fixture(scope="module", autouse=True)
def _residuals():
    yield
    if os.environ.get("LRP_REF_RESIDUALS"):
        peers.dump_residuals(os.environ["LRP_REF_RESIDUALS"], "zennit")


@functools.cache
def _case(net: str, kind: str) -> tuple[lrp_ref.Sequential, np.ndarray, np.ndarray, np.ndarray]:
    model, shape = peers.random_net(net, seed=sum(map(ord, net)))
    x = peers.random_input(shape, kind, seed=len(net) + (7 if kind == "pos" else 11))
    output = model.forward(x)
    return model, x, output, np.argmax(output, axis=1)


# ----------------------------------------------------------------------------- single rules

#: id -> (lrp_ref rule, the zennit rule it maps to: class name and keyword arguments)
SINGLE = {
    "Epsilon": (R.Epsilon(), "Epsilon", {"epsilon": 1e-6}),
    "Epsilon(0.25)": (R.Epsilon(0.25), "Epsilon", {"epsilon": 0.25}),
    "ZPlus": (R.ZPlus(), "ZPlus", {"stabilizer": 1e-6}),
    "ZPlus(0.1)": (R.ZPlus(0.1), "ZPlus", {"stabilizer": 0.1}),
    "AlphaBeta(2,1)": (R.AlphaBeta(2, 1), "AlphaBeta", {"alpha": 2.0, "beta": 1.0, "stabilizer": 1e-6}),
    "AlphaBeta(1,0)": (R.AlphaBeta(1, 0), "AlphaBeta", {"alpha": 1.0, "beta": 0.0, "stabilizer": 1e-6}),
    "AlphaBeta(3,2,0.1)": (R.AlphaBeta(3, 2, 0.1), "AlphaBeta", {"alpha": 3.0, "beta": 2.0, "stabilizer": 0.1}),
    "Gamma": (R.Gamma(), "Gamma", {"gamma": 0.25, "stabilizer": 1e-6}),
    "Gamma(1.5,0.01)": (R.Gamma(1.5, 0.01), "Gamma", {"gamma": 1.5, "stabilizer": 0.01}),
    "WSquare": (R.WSquare(), "WSquare", {"stabilizer": 1e-6}),
    "WSquare(0.1,no-bias)": (R.WSquare(0.1, bias="ignore"), "WSquare", {"stabilizer": 0.1, "zero_params": ["bias"]}),
    "Flat": (R.Flat(), "Flat", {"stabilizer": 1e-6}),
    "Flat(0.5)": (R.Flat(0.5), "Flat", {"stabilizer": 0.5}),
}


def _norm_for(rule: R.Rule) -> R.Epsilon:
    """Average pooling's rule beside ``rule``: Norm with the rule's stabiliser (zennit's default 1e-6)."""
    stabilizer = getattr(rule, "stabilizer", None)
    return R.Epsilon(1e-6 if stabilizer is None else stabilizer)


@pytest.mark.parametrize(("net", "kind"), NET_INPUTS)
@pytest.mark.parametrize("rule_id", list(SINGLE))
def test_rule(net, kind, rule_id):
    model, x, output, target = _case(net, kind)
    rule, zname, zkwargs = SINGLE[rule_id]
    avg = _norm_for(rule)
    composite = peers.zennit_layer_map(rule, avg, x_shape=x.shape)
    assert composite.linear.same_as(zname, **zkwargs), composite.text()
    theirs = peers.run_zennit(model, x, composite, peers.one_hot(output, target))
    ours = lrp_ref.explain(model, x, peers.per_layer(model, rule, avg), target=target, profile="zennit")
    peers.check(theirs, ours.relevance, f"{rule_id}", f"zennit {composite.text()} on {net}-{kind}")


#: id -> (first-layer ZBox stabiliser or None for the default, the rule above it)
BOX = {
    "ZBox+Epsilon": (None, R.Epsilon()),
    "ZBox(0.01)+Epsilon(0.25)": (0.01, R.Epsilon(0.25)),
    "ZBox+Gamma": (None, R.Gamma()),
}


@pytest.mark.parametrize(("net", "kind"), NET_INPUTS)
@pytest.mark.parametrize("box_id", list(BOX))
def test_zbox_on_the_first_layer(net, kind, box_id):
    model, x, output, target = _case(net, kind)
    stabilizer, rest = BOX[box_id]
    low, high = peers.box_bounds(x, kind)
    first = R.ZBox(low, high) if stabilizer is None else R.ZBox(low, high, stabilizer)
    avg = R.Epsilon(1e-6)
    composite = peers.zennit_layer_map(rest, avg, first=first, x_shape=x.shape)
    assert composite.first is not None
    assert composite.first.same_as("ZBox", low=peers.zennit_bound(low, x.shape), high=peers.zennit_bound(high, x.shape),
                                   stabilizer=1e-6 if stabilizer is None else stabilizer)
    theirs = peers.run_zennit(model, x, composite, peers.one_hot(output, target))
    ours = lrp_ref.explain(model, x, peers.per_layer(model, rest, avg, first=first), target=target, profile="zennit")
    peers.check(theirs, ours.relevance, box_id, f"zennit {composite.text()} on {net}-{kind}")


# ----------------------------------------------------------------------------- named composites

#: id -> (lrp_ref composite function, zennit composite class, keyword arguments shared by both)
COMPOSITES = {
    "EpsilonPlus": ("epsilon_plus", "EpsilonPlus", {}),
    "EpsilonPlus(0.25,0.01)": ("epsilon_plus", "EpsilonPlus", {"epsilon": 0.25, "stabilizer": 0.01}),
    "EpsilonPlusFlat": ("epsilon_plus_flat", "EpsilonPlusFlat", {}),
    "EpsilonPlusFlat(0.25,0.01)": ("epsilon_plus_flat", "EpsilonPlusFlat", {"epsilon": 0.25, "stabilizer": 0.01}),
    "EpsilonAlpha2Beta1": ("epsilon_alpha2_beta1", "EpsilonAlpha2Beta1", {}),
    "EpsilonAlpha2Beta1(0.25,0.01)": ("epsilon_alpha2_beta1", "EpsilonAlpha2Beta1",
                                      {"epsilon": 0.25, "stabilizer": 0.01}),
    "EpsilonAlpha2Beta1Flat": ("epsilon_alpha2_beta1_flat", "EpsilonAlpha2Beta1Flat", {}),
    "EpsilonAlpha2Beta1Flat(0.25,0.01)": ("epsilon_alpha2_beta1_flat", "EpsilonAlpha2Beta1Flat",
                                          {"epsilon": 0.25, "stabilizer": 0.01}),
    "EpsilonGammaBox": ("epsilon_gamma_box", "EpsilonGammaBox", {}),
    "EpsilonGammaBox(0.3,0.5,0.01)": ("epsilon_gamma_box", "EpsilonGammaBox",
                                      {"epsilon": 0.3, "gamma": 0.5, "stabilizer": 0.01}),
}


@pytest.mark.parametrize(("net", "kind"), NET_INPUTS)
@pytest.mark.parametrize("start", ["one-hot", "random"])
@pytest.mark.parametrize("composite_id", list(COMPOSITES))
def test_composite(net, kind, start, composite_id):
    model, x, output, target = _case(net, kind)
    ours_name, zname, kwargs = COMPOSITES[composite_id]
    kwargs = dict(kwargs)
    if ours_name == "epsilon_gamma_box":
        kwargs["low"], kwargs["high"] = peers.box_bounds(x, kind)
    composite = getattr(C, ours_name)(**kwargs)
    zcomposite = peers.zennit_named(zname, x.shape, **kwargs)
    # the translation scripts/record_peers.py uses gives the same zennit call
    planned = peers.zennit_plan(model, composite, x.shape)
    assert planned.named is not None and zcomposite.named is not None
    assert planned.named.same_as(zname, **{**zcomposite.named.kwargs, **_zennit_defaults(zname, kwargs)})
    if start == "one-hot":  # the "zennit" profile's own start
        theirs = peers.run_zennit(model, x, zcomposite, peers.one_hot(output, target))
        ours = lrp_ref.explain(model, x, composite, target=target, profile="zennit")
    else:
        R_out = np.random.default_rng(5).normal(size=output.shape)
        theirs = peers.run_zennit(model, x, zcomposite, R_out)
        ours = lrp_ref.explain(model, x, composite, output_relevance=R_out, profile="zennit")
    peers.check(theirs, ours.relevance, composite_id, f"zennit {zcomposite.text()} on {net}-{kind}, {start} start")


def _zennit_defaults(zname: str, given: dict) -> dict:
    """zennit's defaults for the parameters not given (the plan always spells them out)."""
    defaults = {"epsilon": 1e-6, "stabilizer": 1e-6}
    if zname == "EpsilonGammaBox":
        defaults["gamma"] = 0.25
    return {k: v for k, v in defaults.items() if k not in given}


# ----------------------------------------------------------------------------- the conformance suite


def _suite_cases():
    # the chain vectors: a graph's sums and concatenations are `+` and torch.cat inside to_torch's module, which
    # the peers' module hooks do not see (scripts/record_peers.py records no peer there either); zennit on graphs,
    # with its canonizers' Sum module, is checked on torchvision models in test_torchvision.py
    for case in vectors.suite():
        if isinstance(case.model, lrp_ref.Sequential):
            yield pytest.param(case, id=case.name)


#: zennit has no LRP-0 rule, and depth_based (with LRP-0 on top) is not a zennit composite
NOT_IN_ZENNIT = {"lrp0", "depth_based"}


@pytest.mark.parametrize("case", list(_suite_cases()))
def test_conformance_suite_case(case):
    """The plan scripts/record_peers.py records for every vector: zennit's call reproduces lrp_ref's profile."""
    rules = catalog.from_spec(case.rule_spec, bounds=(0.0, 1.0))
    name = case.rule_spec.split(":")[0]
    if name in NOT_IN_ZENNIT:
        with pytest.raises(peers.NotExpressible):
            peers.zennit_plan(case.model, rules, case.x.shape)
        return
    plan = peers.zennit_plan(case.model, rules, case.x.shape)
    ours = lrp_ref.explain(case.model, case.x, rules, profile="zennit")
    theirs = peers.run_zennit(case.model, case.x, plan, peers.one_hot(ours.output, ours.target))
    peers.check(theirs, ours.relevance, f"suite {name}", f"zennit {plan.text()} on {case.name}")


# ----------------------------------------------------------------------------- the documented difference


def test_zero_denominator_is_where_the_two_part():
    """A zero denominator without stabiliser: zennit returns inf/NaN, lrp_ref absorbs (and says so)."""
    model = lrp_ref.Sequential([L.Dense(np.array([[1.0, -1.0]]), None)])
    x = np.array([[1.0, 1.0]])  # z = 1 - 1 = 0 exactly
    composite = peers.zennit_layer_map(R.Epsilon(0.0), R.Epsilon(1e-6), x_shape=x.shape)
    theirs = peers.run_zennit(model, x, composite, np.ones((1, 1)))
    assert not np.all(np.isfinite(theirs))
    ours = lrp_ref.explain(model, x, R.Epsilon(0.0), profile="zennit")
    assert np.all(ours.relevance == 0)
    assert ours.ledger.entries[0].absorbed.tolist() == [1.0]
