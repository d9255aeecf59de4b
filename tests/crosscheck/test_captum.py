"""lrp_ref under the "captum" profile against Captum's ``LRP`` itself, live, in float64.

``EpsilonRule`` (Captum's default everywhere, and custom epsilons), ``GammaRule`` and
``Alpha1_Beta0_Rule`` on the Dense/Conv2d layers, with Captum's defaults (``EpsilonRule``,
epsilon 1e-9) on max and average pooling, or with an explicit ``EpsilonRule`` on the pooling
layers too; on random networks (Dense with biases; Conv2d with stride, padding, dilation and
groups; max pooling; average pooling) and on U(0, 1) and N(0, 1) inputs.  lrp_ref maps
``Epsilon`` to ``EpsilonRule``, ``Gamma`` to ``GammaRule`` and ``ZPlus`` (and ``AlphaBeta(1, 0)``)
to ``Alpha1_Beta0_Rule``.  Agreement: ``assert_relevance_close(captum, lrp_ref, rtol=1e-12)``.

Start relevance: Captum starts from the target output's value (logit x one-hot), which is the
"captum" profile's start; Captum takes no other start.

Set LRP_REF_RESIDUALS=path to collect the worst residual per rule into a JSON file.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")

import peers  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import catalog, vectors  # noqa: E402
from lrp_ref import layers as L  # noqa: E402
from lrp_ref import rules as R  # noqa: E402

KINDS = ("pos", "mixed")
NET_INPUTS = [pytest.param(net, kind, id=f"{net}-{kind}") for net in peers.NETS for kind in KINDS]
RULES = "captum.attr._utils.lrp_rules."


@pytest.fixture(scope="module", autouse=True)
def _residuals():
    yield
    if os.environ.get("LRP_REF_RESIDUALS"):
        peers.dump_residuals(os.environ["LRP_REF_RESIDUALS"], "captum")


@functools.cache
def _case(net: str, kind: str) -> tuple[lrp_ref.Sequential, np.ndarray, np.ndarray]:
    model, shape = peers.random_net(net, seed=3 + sum(map(ord, net)))
    x = peers.random_input(shape, kind, seed=len(net) + (17 if kind == "pos" else 19))
    return model, x, np.argmax(model.forward(x), axis=1)


#: id -> (lrp_ref rule on Dense/Conv2d, Captum rule there (None: Captum's default), epsilon on pooling or None)
CASES = {
    "defaults": (R.Epsilon(), None, None),
    "EpsilonRule(0.25)": (R.Epsilon(0.25), ("EpsilonRule", {"epsilon": 0.25}), None),
    "EpsilonRule(1e-3)": (R.Epsilon(1e-3), ("EpsilonRule", {"epsilon": 1e-3}), None),
    "EpsilonRule(0.1)+pools": (R.Epsilon(0.1), ("EpsilonRule", {"epsilon": 0.1}), 0.1),
    "GammaRule": (R.Gamma(), ("GammaRule", {"gamma": 0.25}), None),
    "GammaRule(1.0)": (R.Gamma(1.0), ("GammaRule", {"gamma": 1.0}), None),
    "GammaRule(0.5)+pools(0.2)": (R.Gamma(0.5), ("GammaRule", {"gamma": 0.5}), 0.2),
    "Alpha1_Beta0_Rule": (R.ZPlus(), ("Alpha1_Beta0_Rule", {}), None),
    "Alpha1_Beta0_Rule-as-AlphaBeta(1,0)": (R.AlphaBeta(1, 0), ("Alpha1_Beta0_Rule", {}), None),
}


@pytest.mark.parametrize(("net", "kind"), NET_INPUTS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_rule(net, kind, case_id):
    model, x, target = _case(net, kind)
    rule, captum, pool_epsilon = CASES[case_id]
    if pool_epsilon is None:  # Captum's defaults on pooling: EpsilonRule(1e-9); lrp_ref's profile gives the same
        ours_rules = peers.per_layer(model, rule, avgpool=R.Epsilon())
    else:
        ours_rules = peers.per_layer(model, rule, avgpool=R.Epsilon(pool_epsilon),
                                     maxpool=R.WinnerTakesAll(epsilon=pool_epsilon))

    # Captum's rules, written out independently of the mapping in peers.captum_rule
    plan: dict[int, peers.Made] = {}
    for i, layer in enumerate(model):
        if captum is not None and isinstance(layer, (L.Dense, L.Conv2d)):
            plan[i] = peers.Made(RULES + captum[0], captum[1])
        if pool_epsilon is not None and isinstance(layer, (L.AvgPool2d, L.MaxPool2d)):
            plan[i] = peers.Made(RULES + "EpsilonRule", {"epsilon": pool_epsilon})
    # the mapping scripts/record_peers.py uses agrees (on the layers where a rule was set)
    mapped = peers.captum_plan(model, ours_rules)
    for i, made in plan.items():
        assert mapped[i].same_as(made.short, **made.kwargs), (i, mapped[i].text())

    theirs = peers.run_captum(model, x, target, plan)
    ours = lrp_ref.explain(model, x, ours_rules, target=target, profile="captum")
    peers.check(theirs, ours.relevance, case_id, f"captum {peers.captum_call(model, plan)} on {net}-{kind}")


def test_a_failed_call_leaves_the_next_one_clean():
    """run_captum builds a fresh torch model per call: a Captum failure cannot poison the next check."""
    model, x, target = _case("maxpool", "mixed")
    with pytest.raises(Exception):  # noqa: B017 - whatever Captum raises for an unknown rule object
        peers.run_captum(model, x, target, {0: peers.Made("builtins.object", {})})
    theirs = peers.run_captum(model, x, target, {})
    ours = lrp_ref.explain(model, x, R.Epsilon(), target=target, profile="captum")
    peers.check(theirs, ours.relevance, "defaults", "captum after a failed call")


# ----------------------------------------------------------------------------- the conformance suite


def _suite_cases():
    # the chain vectors: a graph's sums and concatenations are `+` and torch.cat inside to_torch's module, which
    # the peers' module hooks do not see (scripts/record_peers.py records no peer there either); zennit on graphs,
    # with its canonizers' Sum module, is checked on torchvision models in test_torchvision.py
    for case in vectors.suite():
        if isinstance(case.model, lrp_ref.Sequential):
            yield pytest.param(case, id=case.name)


#: the vectors' specifications Captum reproduces (others: no Captum rule, or a stabiliser Captum cannot set)
CAPTUM_SPECS = {"epsilon", "gamma", "zplus"}


@pytest.mark.parametrize("case", list(_suite_cases()))
def test_conformance_suite_case(case):
    """The plan scripts/record_peers.py records for every vector: Captum's call reproduces lrp_ref's profile."""
    rules = catalog.from_spec(case.rule_spec, bounds=(0.0, 1.0))
    name = case.rule_spec.split(":")[0]
    if name not in CAPTUM_SPECS:
        with pytest.raises(peers.NotExpressible):
            peers.captum_plan(case.model, rules)
        return
    plan = peers.captum_plan(case.model, rules)
    ours = lrp_ref.explain(case.model, case.x, rules, profile="captum")
    theirs = peers.run_captum(case.model, case.x, ours.target, plan)
    peers.check(theirs, ours.relevance, f"suite {name}", f"captum {peers.captum_call(case.model, plan)} on {case.name}")
