"""Excitation Backprop (Zhang et al. 2016): MWP and c-MWP against slow references, and their stated properties.

* fast == the explicit conditional-probability reference (tests/reference.py) to rtol 1e-10 on dense,
  convolutional (stride, padding, bias on and off) and average-pooling layers, and layer by layer on the
  shipped CNN;
* each layer's winning probability sums to one, the mass dropped at zero denominators accounted for
  (computed independently, from the reference's conditional distributions);
* MWP equals LRP-z+ without bias divided by f(x) (the relation the module docstring states);
* c-MWP is the target's MWP minus the MWP of the dual unit (negated top-layer weights), at every layer;
* negative inputs are refused, naming the layer and the minimum;
* the maps equal TorchRay's (recorded by scripts/record_beyond_lrp.py) on ten shipped digits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lrp_ref as L
from lrp_ref import catalog, composites
from lrp_ref.errors import ArgumentError, RuleParameterError
from lrp_ref.excitation import ContrastiveExcitation, ExcitationBackprop, explain_excitation
from lrp_ref.layers import Conv2d, Dense, LinearLayer, MaxPool2d
from lrp_ref.rules import WinnerTakesAll

try:  # tests/ as a package or as a plain directory on sys.path
    from . import nets
    from . import reference as ref
    from .test_reference import _seed, assert_relevance_matches, layer_case, make_inputs
except ImportError:
    import nets  # type: ignore[no-redef]
    import reference as ref  # type: ignore[no-redef]
    from test_reference import _seed, assert_relevance_matches, layer_case, make_inputs  # type: ignore[no-redef]

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
LAYERS = ["dense-bias", "dense-nobias", "dense-wide", "conv3x3-bias", "conv3x3-nobias", "conv-s2-p1-bias",
          "conv-s2-p1-nobias", "conv-s3-uneven", "conv-tf-same-s2", "conv-rect-g2", "avgpool-3-s2",
          "adaptive-overlap"]


@pytest.mark.parametrize("start", ["probability", "mixed"])
@pytest.mark.parametrize("layer_name", LAYERS)
@pytest.mark.parametrize("rule", [ExcitationBackprop(), ContrastiveExcitation()], ids=repr)
def test_fast_equals_reference(rule, layer_name, start):
    layer, _, W, b, _ = layer_case(layer_name)
    a, R = make_inputs(layer_name, "relu")  # post-ReLU: non-negative with exact zeros
    if start == "probability":
        R = np.abs(R) / np.abs(R).reshape(len(R), -1).sum(axis=1).reshape((-1,) + (1,) * (R.ndim - 1))
    fast = rule.relevance(layer, a, R)
    assert_relevance_matches(fast, ref.ref_beyond_lrp(rule, layer, a, R, matrices=(W, b)), R)


def test_zero_denominator_drops_the_probability():
    # Dense, 2 inputs -> 2 outputs; W (out, in) = [[1, -1], [-2, 3]], a = (0, 1), P = (0.25, 0.75).
    # Unit 0 has excitatory inputs a_0 w_00+ = 0 (a_0 = 0) and a_1 w_01+ = 0 (w_01 < 0): no children, its 0.25 drops.
    # Unit 1: a_0 w_10+ = 0, a_1 w_11+ = 3, so P(a_1 | unit 1) = 1 and input 1 gets 0.75.
    layer = Dense(np.array([[1.0, -1.0], [-2.0, 3.0]]), np.array([5.0, -5.0]))
    step = ExcitationBackprop().relevance(layer, np.array([[0.0, 1.0]]), np.array([[0.25, 0.75]]))
    assert_allclose(step.relevance, [[0.0, 0.75]], rtol=0, atol=0)
    assert_allclose(step.absorbed, [0.25], rtol=0, atol=0)
    # c-MWP: the dual unit has weights [[-1, 1], [2, -3]]: unit 0 passes its 0.25 to input 1 (a_1 (-w_01)+ = 1),
    # unit 1 has a_0 * 2 = 0 and a_1 * 0 = 0, so the dual drops 0.75; target 0.75 - dual 0.25 -> (0, 0.5)
    step = ContrastiveExcitation().relevance(layer, np.array([[0.0, 1.0]]), np.array([[0.25, 0.75]]))
    assert_allclose(step.relevance, [[0.0, 0.5]], rtol=0, atol=0)
    # absorbed: the target drops 0.25, the dual passes 0.25 (subtracted): 0.5, and 1 - 0.5 - 0.5 balances
    assert_allclose(step.absorbed, [0.5], rtol=0, atol=0)


def _models():
    rng = np.random.default_rng(_seed("excitation", "models"))
    return {"mlp": (nets.random_mlp(rng, (6, 8, 5, 3)), (6,)),
            "cnn-max": (nets.random_cnn(rng), (2, 8, 8)),
            "cnn-avg": (nets.random_cnn(rng, pool="avg"), (2, 8, 8)),
            "cnn-nobias": (nets.random_cnn(rng, bias=False), (2, 8, 8))}


def _with_inhibited_unit(model):
    """The model with unit 0 of its first layer given only negative weights and a bias of 3.

    That unit is active (relu(3 - ...)) and receives probability from above, but has no excitatory input:
    Zhang et al.'s conditional distribution is undefined there and its mass is dropped.
    """
    first = model[0]
    weight = first.weight.copy()
    weight[0] = -np.abs(weight[0])
    bias = first.bias.copy()
    bias[0] = 3.0
    changed = Dense(weight, bias) if isinstance(first, Dense) else Conv2d(weight, bias, padding=first.padding)
    return L.Sequential([changed, *list(model)[1:]])


def _matrix(layer, shape):
    return ref.conv2d_matrix(layer, shape) if isinstance(layer, Conv2d) else ref.dense_matrix(layer, shape)[0]


@pytest.mark.parametrize("inhibited", [False, True])
@pytest.mark.parametrize("name", ["mlp", "cnn-max", "cnn-avg"])
def test_each_layer_sums_to_one_with_the_dropped_mass(name, inhibited):
    model, shape = _models()[name]
    model = _with_inhibited_unit(model) if inhibited else model
    x = np.random.default_rng(_seed("excitation", name)).uniform(0.0, 1.0, size=(4, *shape))
    x[:, ..., 0] = 0.0  # exact zeros, as on MNIST's background
    e = explain_excitation(model, x)
    dropped_above = np.zeros(len(x))  # the mass dropped by the layers above boundary i, from the reference
    for i in reversed(range(len(model))):
        layer = model[i]
        if isinstance(layer, LinearLayer):
            a = e.activations[i]
            W = _matrix(layer.for_input(a.shape[1:]), a.shape[1:])
            _, dropped = ref.ref_excitation(W, a.reshape(len(a), -1), e.layers[i + 1].reshape(len(a), -1))
            dropped_above += dropped
        total = e.layers[i].reshape(len(x), -1).sum(axis=1)
        assert_allclose(total + dropped_above, 1.0, rtol=1e-12, err_msg=f"boundary {i}")
        assert np.all(e.layers[i] >= 0)  # probabilities
    # the ledger books the same dropped mass, layer by layer; the inhibited unit makes it non-zero
    assert_allclose(e.ledger.absorbed, dropped_above, rtol=1e-12, atol=1e-15)
    assert np.all(dropped_above > 1e-3) if inhibited else np.all(dropped_above == 0)
    e.ledger.check_balance()


@pytest.mark.parametrize("name", ["mlp", "cnn-max", "cnn-avg", "cnn-nobias"])
def test_mwp_is_zplus_without_bias_over_the_start(name):
    model, shape = _models()[name]
    x = np.random.default_rng(_seed("zplus", name)).uniform(0.0, 1.0, size=(3, *shape))
    mwp = explain_excitation(model, x)
    zplus = L.explain(model, x, L.rules.ZPlus(bias="none"))
    f = zplus.score.reshape(-1, 1)
    for i, (p, r) in enumerate(zip(mwp.layers, zplus.layers)):
        assert_allclose(p.reshape(len(x), -1) * f, r.reshape(len(x), -1), rtol=1e-10, atol=1e-13 * np.abs(r).max(),
                        err_msg=f"boundary {i}")
    # and the composite under explain() is f(x) times the probabilities
    e = L.explain(model, x, composites.excitation_backprop())
    assert_allclose(e.relevance, zplus.relevance, rtol=1e-10, atol=1e-13 * np.abs(zplus.relevance).max())


@pytest.mark.parametrize("name", ["mlp", "cnn-max", "cnn-avg"])
def test_contrastive_is_target_minus_dual_unit(name):
    model, shape = _models()[name]
    x = np.random.default_rng(_seed("cmwp", name)).uniform(0.0, 1.0, size=(3, *shape))
    target = np.array([0, 1, 2])
    c = explain_excitation(model, x, target, contrastive=True)
    top = model[len(model) - 1]
    dual_model = L.Sequential([*list(model)[:-1], Dense(-top.weight, top.bias)])  # the dual units: weights negated
    mwp, dual = explain_excitation(model, x, target), explain_excitation(dual_model, x, target)
    for i in range(len(model)):  # every boundary below the output
        expected = mwp.layers[i] - dual.layers[i]
        assert_allclose(c.layers[i], expected, rtol=1e-10, atol=1e-13, err_msg=f"boundary {i}")
    # the map sums to zero up to what the two maps drop
    dropped = mwp.ledger.absorbed - dual.ledger.absorbed
    assert_allclose(c.relevance.reshape(3, -1).sum(axis=1), -dropped, atol=1e-12)
    c.ledger.check_balance()
    c.ledger.check_conservation()


def test_negative_inputs_are_refused_with_the_layer_and_minimum():
    model, shape = _models()["cnn-max"]
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(2, *shape))
    x[1, 0, 3, 4] = -0.75
    with pytest.raises(RuleParameterError, match=r"layer 0 \(Conv2d.*1 negative value\(s\), minimum -0\.75.*down_to"):
        L.explain(model, x, composites.excitation_backprop())
    mlp = L.Sequential([Dense(np.eye(2), None), Dense(np.ones((1, 2)), None)])  # no ReLU: layer 1 sees a < 0
    with pytest.raises(RuleParameterError, match=r"layer 1 \(Dense.*minimum -2"):
        L.explain(mlp, np.array([[1.0, -2.0]]), composites.excitation_backprop(contrastive=True))


def test_down_to_starts_at_a_chosen_layer():
    model, shape = _models()["cnn-max"]
    x = np.random.default_rng(2).uniform(-1.0, 1.0, size=(2, *shape))  # negative pixels: layer 0 refuses them
    with pytest.raises(RuleParameterError):
        explain_excitation(model, x)
    e = explain_excitation(model, x, down_to=3)  # the second conv reads a max-pooled ReLU output
    assert e.relevance.shape == model.forward_all(x)[3].shape
    assert_allclose(e.relevance.reshape(2, -1).sum(axis=1) + e.ledger.absorbed, 1.0, rtol=1e-12)
    full = explain_excitation(model, np.abs(x))  # the same map as the full run's layer 3 when both apply
    part = explain_excitation(model, np.abs(x), down_to=3)
    assert_allclose(part.relevance, full.layers[3], rtol=1e-12, atol=1e-15)
    for bad in (len(model), -1, True, 1.5):
        with pytest.raises(ArgumentError, match="down_to"):
            explain_excitation(model, x, down_to=bad)
    with pytest.raises(ArgumentError, match="contrastive"):
        explain_excitation(model, np.abs(x), contrastive=1)


def test_catalog_names_build_the_composites():
    model, _ = _models()["cnn-max"]
    mwp, cmwp = catalog.from_spec("excitation_backprop"), catalog.from_spec("excitation_backprop_contrastive")
    assert [repr(r) for r in mwp.rules_for(model) if isinstance(r, (ExcitationBackprop, ContrastiveExcitation))] == \
        ["ExcitationBackprop()"] * 4
    assert [type(r).__name__ for r in cmwp.assign(model) if r is not None][-1] == "ContrastiveExcitation"
    with pytest.raises(RuleParameterError, match="did you mean 'excitation_backprop'"):
        catalog.check_spec("excitaton_backprop")
    with pytest.raises(RuleParameterError, match=r"no parameter 'contrastive'.*excitation_backprop_contrastive"):
        catalog.check_spec("excitation_backprop:contrastive=1")
    with pytest.raises(RuleParameterError, match="method"):
        catalog.check_spec("zbox+excitation_backprop")


def _shipped_digits(model, n=1):
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        images = np.asarray(f["images"][:n], dtype=np.float64)
    return images[:, None] * model.metadata["input_scale"] + model.metadata["input_offset"]


@functools.cache
def _shipped_cnn():
    """The shipped CNN, and the dense matrix of each of its Dense/Conv2d layers (built once)."""
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    shapes = model.shapes((1, 28, 28))  # shapes[i]: the input of layer i
    return model, {i: _matrix(layer, shapes[i]) for i, layer in enumerate(model) if isinstance(layer, (Dense, Conv2d))}


@pytest.mark.parametrize("contrastive", [False, True])
def test_shipped_cnn_layer_by_layer_against_the_reference(contrastive):
    model, matrices = _shipped_cnn()
    x = _shipped_digits(model)
    e = explain_excitation(model, x, contrastive=contrastive)
    for i, layer in enumerate(model):
        if not isinstance(layer, (Dense, Conv2d)):
            continue
        a, R = e.activations[i], e.layers[i + 1]
        W = matrices[i]
        R_in, absorbed = ref.ref_beyond_lrp(e.rules[i], layer, a, R, matrices=(W, np.zeros(W.shape[1])))
        assert_allclose(e.layers[i], R_in, rtol=1e-10, atol=1e-13, err_msg=f"layer {i}")
        assert_allclose(e.ledger.entries[i].absorbed, absorbed, rtol=1e-10, atol=1e-13)
    e.ledger.check_balance()
    e.ledger.check_conservation()


# ----------------------------------------------------------------------------- recorded peer: TorchRay

PEERS = Path(__file__).resolve().parent / "golden" / "beyond_lrp" / "mnist_cnn.h5"


def peer_maps(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(x, target, recorded map, provenance) from scripts/record_beyond_lrp.py's file."""
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    with h5py.File(PEERS, "r") as f:
        samples, target, recorded, source = np.asarray(f["samples"]), np.asarray(f["target"]), np.asarray(f[name]), \
            str(f.attrs[name])
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        images = np.asarray(f["images"][samples.tolist()], dtype=np.float64)
    return images[:, None] * model.metadata["input_scale"] + model.metadata["input_offset"], target, recorded, source


def ties_first(model, composite):
    """The composite's rules with max-pool ties routed to the first arg-max, as PyTorch's gradient does."""
    return [WinnerTakesAll(ties="first") if isinstance(layer, MaxPool2d) else rule
            for layer, rule in zip(model, composite.rules_for(model))]


@pytest.mark.parametrize("contrastive", [False, True])
def test_agrees_with_torchray_on_the_shipped_cnn(contrastive):
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    x, target, recorded, source = peer_maps("cmwp" if contrastive else "mwp")
    assert "TorchRay" in source
    assert_array_equal(model.forward(x).argmax(axis=1), target)
    start = np.zeros((len(x), 10))
    start[np.arange(len(x)), target] = 1.0
    rules = ties_first(model, composites.excitation_backprop(contrastive))
    mine = L.explain(model, x, rules, output_relevance=start).relevance
    assert_allclose(mine, recorded, rtol=1e-12, atol=1e-12 * np.abs(recorded).max())
    # lrp_ref's default splits tied maxima evenly: on MNIST's saturated strokes that is a visible difference
    split = explain_excitation(model, x, target, contrastive=contrastive).relevance
    assert np.abs(split - recorded).max() > 1e-6 * np.abs(recorded).max()
