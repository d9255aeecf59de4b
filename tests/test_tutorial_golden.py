"""lrp_ref under profile="tutorial" against the recorded outputs of the Montavon et al. tutorial's loops.

``tests/golden/tutorial/*.h5`` hold the tutorial's NumPy MLP loop and its PyTorch VGG loop,
re-implemented in ``tests/crosscheck/tutorial_loops.py`` and run on small random networks
(``scripts/record_tutorial.py``, ``make tutorial-peer``; the live comparison is
``tests/crosscheck/test_tutorial.py`` in ``make crosscheck``).  Here, without torch, every
file's model, input and assignment go through ``lrp_ref.explain`` with
``composites.tutorial_vgg(...)`` and the result must match the loop's to 1e-10 of max|R|:
on the whole batch, and on each sample alone, which differs, because the tutorial's
epsilon is 0.25 x the RMS of z over the whole batch tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import composites
from lrp_ref import rules as R
from lrp_ref.io import read_model

GOLDEN = Path(__file__).resolve().parent / "golden" / "tutorial"
FILES = sorted(GOLDEN.glob("*.h5"))
#: |lrp_ref - loop| <= RTOL * max|loop|, element-wise (measured: below 4e-15)
RTOL = 1e-10


def read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "lrp_ref-tutorial-golden"
        case = {key: f[key][()] for key in ("x", "target", "low", "high", "relevance", "relevance_single")}
        case["model"] = read_model(f["model"])
        for key in ("loop", "parameters", "assignment", "lrp_ref_rules"):
            case[key] = str(f.attrs[key])
    return case


def explain(case: dict, x: np.ndarray, target: np.ndarray) -> lrp_ref.Explanation:
    rules = composites.tutorial_vgg(case["low"], case["high"], **json.loads(case["parameters"]))
    return lrp_ref.explain(case["model"], x, rules, target=target, profile="tutorial")


def assert_close_to_max(actual: np.ndarray, desired: np.ndarray, what: str) -> None:
    assert_allclose(actual, desired, rtol=0, atol=RTOL * np.abs(desired).max(), err_msg=what)


def test_both_loops_are_recorded():
    loops = [read(p)["loop"] for p in FILES]
    assert loops.count("mlp") >= 2 and loops.count("vgg") >= 2, "run `make tutorial-peer`"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_lrp_ref_matches_the_tutorial_loop_on_the_batch(path):
    case = read(path)
    assert case["x"].shape[0] == 3
    e = explain(case, case["x"], case["target"])
    np.testing.assert_array_equal(e.target, case["target"])
    assert np.abs(case["relevance"]).max() > 0
    assert_close_to_max(e.relevance, case["relevance"], f"{path.name}: batch of 3")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_relevance_depends_on_the_batch_in_the_tutorial_and_in_lrp_ref(path):
    case = read(path)
    x, t = case["x"], case["target"]
    alone = np.concatenate([explain(case, x[i:i + 1], t[i:i + 1]).relevance for i in range(len(x))])
    assert_close_to_max(alone, case["relevance_single"], f"{path.name}: each sample alone")
    scale = np.abs(case["relevance"]).max()
    # the tutorial's own numbers change with the batch, by far more than the tolerance ...
    assert np.abs(case["relevance_single"] - case["relevance"]).max() > 1e-3 * scale
    # ... and lrp_ref's change the same way
    assert np.abs(alone - explain(case, x, t).relevance).max() > 1e-3 * scale


def regimes(model: lrp_ref.Sequential, rules) -> set[tuple[str, str]]:
    """(layer type, rule) pairs, AverageInstead named with its inner rule."""
    out = set()
    for layer, rule in zip(model, rules):
        name = type(rule).__name__
        if isinstance(rule, R.AverageInstead):
            name += f"({type(rule.rule).__name__})"
        out.add((type(layer).__name__, name))
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_assignment_covers_every_regime(path):
    """zB, gamma and epsilon x RMS in every file, LRP-0 too in all but the tutorial's 3-layer MLP;
    the VGG files on convolutions and pools alike (max pools as average pools, in each range)."""
    case = read(path)
    rules = explain(case, case["x"][:1], case["target"][:1]).rules
    assert all((r.scale == "rms" and r.epsilon == 0.25) or case["loop"] == "mlp"
               for r in rules if isinstance(r, R.Epsilon))
    found = regimes(case["model"], rules)
    if case["loop"] == "mlp":
        assert {("Dense", "ZBox"), ("Dense", "Gamma"), ("Dense", "Epsilon")} <= found
    else:
        assert {("Conv2d", "ZBox"), ("Conv2d", "Gamma"), ("Conv2d", "Epsilon"), ("Dense", "LRP0"),
                ("MaxPool2d", "AverageInstead(LRP0)"), ("MaxPool2d", "AverageInstead(Epsilon)")} <= found
        if path.stem != "vgg16-shape":  # VGG-16 has no convolution above its epsilon range; the others do
            assert ("Conv2d", "LRP0") in found


@pytest.mark.parametrize("kwargs", [
    {"gamma_until": -1}, {"gamma_until": 1.5}, {"epsilon_until": True}, {"epsilon_until": "30"},
    {"gamma_until": 5, "epsilon_until": 4}, {"gamma": -0.1}, {"epsilon": float("nan")},
])
def test_tutorial_vgg_refuses_bad_parameters(kwargs):
    with pytest.raises(lrp_ref.LrpRefError):
        composites.tutorial_vgg(0.0, 1.0, **kwargs)


def test_tutorial_vgg_refuses_bad_bounds_and_models_without_weights():
    with pytest.raises(lrp_ref.LrpRefError):
        composites.tutorial_vgg(1.0, 0.0)
    with pytest.raises(lrp_ref.RuleAssignmentError):
        composites.tutorial_vgg(0.0, 1.0).rules_for(lrp_ref.Sequential([lrp_ref.Flatten()]))
