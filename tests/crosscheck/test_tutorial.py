"""lrp_ref under profile="tutorial" against the Montavon et al. tutorial's two LRP loops, live, in float64.

The loops are re-implemented in ``tutorial_loops.py`` (the NumPy MLP loop; the PyTorch VGG loop
with autograd, every max pool turned into an average pool, rules by layer index).  Networks:
two MLPs (the tutorial's 3-layer assignment, and a deeper one with every regime) and three
small VGG-like nets with random weights and biases whose index ranges cover convolutions and
pools in the gamma, the epsilon x RMS and the LRP-0 regime ("vgg16-shape" has VGG-16's
layer structure, so the tutorial's own indices 16 and 30).  Batches of 1 and 3, two inputs
each.  lrp_ref gets the tutorial's assignment as a list written layer by layer and as
``composites.tutorial_vgg(...)``.  Agreement: ``assert_relevance_close(lrp_ref, loop,
rtol=1e-10)`` (measured: below 1e-14).

Set LRP_REF_RESIDUALS=path to collect the worst residual per case into a JSON file.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import peers  # noqa: E402
import tutorial_loops as T  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import composites as C  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.testing import assert_relevance_close, relevance_error  # noqa: E402

RTOL = 1e-10
BATCHES = (1, 3)
INPUT_SEEDS = (1, 2)
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "tutorial"


@pytest.fixture(scope="module", autouse=True)
def _residuals():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster on a shared machine
    yield
    torch.set_num_threads(threads)
    if os.environ.get("LRP_REF_RESIDUALS"):
        peers.dump_residuals(os.environ["LRP_REF_RESIDUALS"], "tutorial")


def check(actual: np.ndarray, loop: np.ndarray, label: str, what: str) -> None:
    _, rel = relevance_error(actual, loop)
    peers.RESIDUALS[label] = max(peers.RESIDUALS.get(label, 0.0), rel)
    assert np.abs(loop).max() > 0, f"{what}: the loop's relevance is all zero (a dead network)"
    assert_relevance_close(actual, loop, rtol=RTOL, what=what)


@functools.cache
def mlp(name: str) -> tuple[T.MLPCase, lrp_ref.Sequential]:
    case = T.MLPS[name]()
    return case, T.mlp_model(case)


@functools.cache
def vgg(name: str) -> tuple[T.VGGCase, lrp_ref.Sequential]:
    case = T.VGGS[name]()
    return case, T.vgg_model(case)


def mlp_composite(case: T.MLPCase) -> C.TutorialComposite:
    return C.tutorial_vgg(case.low, case.high, **json.loads(T.mlp_parameters(case)))


def vgg_composite(case: T.VGGCase) -> C.TutorialComposite:
    return C.tutorial_vgg(case.low, case.high, gamma_until=case.gamma_until, epsilon_until=case.epsilon_until,
                          gamma=case.gamma, epsilon=case.epsilon)


CASES = [pytest.param(name, batch, seed, id=f"{name}-n{batch}-s{seed}")
         for name in T.MLPS for batch in BATCHES for seed in INPUT_SEEDS]
VGG_CASES = [pytest.param(name, batch, seed, id=f"{name}-n{batch}-s{seed}")
             for name in T.VGGS for batch in BATCHES for seed in INPUT_SEEDS]


# ----------------------------------------------------------------------------- the two loops


@pytest.mark.parametrize("name, batch, seed", CASES)
def test_mlp_loop(name, batch, seed):
    case, model = mlp(name)
    x = T.mlp_input(case, batch, seed)
    target = np.argmax(model.forward(x), axis=1)
    loop = T.mlp_loop(case, x, target)
    for how, rules in (("by hand", T.mlp_rules_by_hand(case)), ("tutorial_vgg", mlp_composite(case))):
        e = lrp_ref.explain(model, x, rules, target=target, profile="tutorial")
        check(e.relevance, loop, name, f"{name} ({how}), batch {batch}")


@pytest.mark.parametrize("name, batch, seed", VGG_CASES)
def test_vgg_loop(name, batch, seed):
    case, model = vgg(name)
    x = T.vgg_input(case, batch, seed)
    target = np.argmax(model.forward(x), axis=1)
    loop = T.vgg_loop(case, x, target)
    for how, rules in (("by hand", T.vgg_rules_by_hand(case)), ("tutorial_vgg", vgg_composite(case))):
        e = lrp_ref.explain(model, x, rules, target=target, profile="tutorial")
        check(e.relevance, loop, name, f"{name} ({how}), batch {batch}")


@pytest.mark.parametrize("name", T.VGGS)
def test_the_two_vgg_networks_are_the_same(name):
    """The torch layer list (classifier as convolutions) and the lrp_ref model compute the same output."""
    case, model = vgg(name)
    x = T.vgg_input(case, 3, 7)
    assert_relevance_close(T.vgg_output(case, x), model.forward(x), rtol=1e-12, what="output")


def test_vgg16_shape_uses_the_tutorials_own_indices():
    case, model = vgg("vgg16-shape")
    assert (case.gamma_until, case.epsilon_until) == (16, 30)
    assert repr(C.tutorial_vgg(case.low, case.high).rules_for(model)) == repr(vgg_composite(case).rules_for(model))
    assert [i for i, layer in enumerate(model) if isinstance(layer, lrp_ref.MaxPool2d)] == [4, 9, 16, 23, 30]


@pytest.mark.parametrize("name", T.VGGS)
def test_the_pools_in_the_epsilon_range_matter(name):
    """Before AverageInstead took a rule, the profile gave every max pool LRP-0 as average pooling.
    The tutorial's epsilon x RMS on those pools changes its relevance by far more than the tolerance
    (measured 0.29 to 1.03 of max|R| on these nets; 0.65 to 0.80 on VGG-16)."""
    case, model = vgg(name)
    x = T.vgg_input(case, 3, 1)
    target = np.argmax(model.forward(x), axis=1)
    before = [R.AverageInstead(R.LRP0()) if isinstance(r, R.AverageInstead) else r for r in T.vgg_rules_by_hand(case)]
    e = lrp_ref.explain(model, x, before, target=target, profile="tutorial")
    assert relevance_error(e.relevance, T.vgg_loop(case, x, target))[1] > 0.1


# ----------------------------------------------------------------------------- batch dependence


def _loops():
    for name in T.MLPS:
        case, model = mlp(name)
        yield name, model, T.mlp_input(case, 3, 4), T.mlp_rules_by_hand(case), functools.partial(T.mlp_loop, case)
    for name in T.VGGS:
        case, model = vgg(name)
        yield name, model, T.vgg_input(case, 3, 4), T.vgg_rules_by_hand(case), functools.partial(T.vgg_loop, case)


@pytest.mark.parametrize("name", [*T.MLPS, *T.VGGS])
def test_the_relevance_depends_on_the_batch_and_the_profile_reproduces_it(name):
    """The tutorial's epsilon is 0.25 x the RMS of z over the whole batch tensor: a sample explained
    within a batch gets other relevances than alone.  lrp_ref does the same, on purpose: the batch
    equals the loop on the batch, each sample alone equals the loop on that sample alone."""
    _, model, x, rules, loop = next(item for item in _loops() if item[0] == name)
    target = np.argmax(model.forward(x), axis=1)
    loop_batch = loop(x, target)
    loop_alone = np.concatenate([loop(x[i:i + 1], target[i:i + 1]) for i in range(3)])
    ours_batch = lrp_ref.explain(model, x, rules, target=target, profile="tutorial").relevance
    ours_alone = np.concatenate([lrp_ref.explain(model, x[i:i + 1], rules, target=target[i:i + 1],
                                                 profile="tutorial").relevance for i in range(3)])
    assert relevance_error(loop_alone, loop_batch)[1] > 1e-3          # the tutorial depends on the batch
    assert relevance_error(ours_alone, ours_batch)[1] > 1e-3          # and so does the profile
    check(ours_batch, loop_batch, name, f"{name}: batch of 3")
    for i in range(3):
        check(ours_alone[i], loop_alone[i], name, f"{name}: sample {i} alone")


def test_without_rms_layers_the_batch_does_not_matter():
    """The dependence comes from the RMS alone: with epsilon 0 the loop is per sample."""
    case = T.random_vgg("no-rms", ((4,), (4,)), (5,), 8, 1, 1, seed=3)
    case = T.VGGCase(case.name, case.input_shape, case.features, case.classifier, case.gamma_until,
                     case.epsilon_until, epsilon=0.0)
    model = T.vgg_model(case)
    x = T.vgg_input(case, 3, 1)
    target = np.argmax(model.forward(x), axis=1)
    alone = np.concatenate([T.vgg_loop(case, x[i:i + 1], target[i:i + 1]) for i in range(3)])
    assert_relevance_close(alone, T.vgg_loop(case, x, target), rtol=1e-13)


# ----------------------------------------------------------------------------- the golden files


@pytest.mark.parametrize("name", T.GOLDEN)
def test_the_golden_files_hold_what_the_loops_compute(name):
    """tests/golden/tutorial (checked in make test without torch) against a fresh run of the loops."""
    h5py = pytest.importorskip("h5py")
    fresh = T.golden_case(name)
    with h5py.File(GOLDEN / f"{name}.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][()], fresh["x"])
        np.testing.assert_array_equal(f["target"][()], fresh["target"])
        assert str(f.attrs["parameters"]) == fresh["parameters"]
        assert str(f.attrs["assignment"]) == fresh["assignment"]
        for key in ("relevance", "relevance_single"):
            assert_relevance_close(fresh[key], f[key][()], rtol=1e-13, what=f"{name}.h5:{key}")
