"""Relative Attributing Propagation (Nam et al. 2020): hand-checked cases, its stated properties, the reference.

* hand-computed cases (the arithmetic is in the comments): the absolute influence normalisation, the
  relevant/irrelevant separation, the uniform shift, and a whole two-layer network;
* conservation: every layer boundary holds exactly f(x), biases included, nothing absorbed;
* the sign split: the last hidden layer takes the sign of f(x); both signs appear below it;
* fast == the message-tensor reference of tests/reference.py to rtol 1e-10 on dense, convolutional
  (stride, padding, bias on and off) layers with mixed-sign and post-ReLU inputs, and on the shipped CNN;
* the maps equal the authors' released code's (recorded by scripts/record_beyond_lrp.py) on ten digits.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import catalog, composites
from lrp_ref.errors import RuleParameterError
from lrp_ref.layers import Conv2d, Dense, ReLU
from lrp_ref.rap import RAP, AbsoluteInfluence
from lrp_ref.rules import LRP0, ZBox, ZPlus

try:  # tests/ as a package or as a plain directory on sys.path
    from . import nets
    from . import reference as ref
    from .test_excitation import peer_maps, ties_first
    from .test_reference import _seed, assert_relevance_matches, layer_case, make_inputs
except ImportError:
    import nets  # type: ignore[no-redef]
    import reference as ref  # type: ignore[no-redef]
    from test_excitation import peer_maps, ties_first  # type: ignore[no-redef]
    from test_reference import _seed, assert_relevance_matches, layer_case, make_inputs  # type: ignore[no-redef]

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


# ----------------------------------------------------------------------------- hand-checked cases


def test_absolute_influence_by_hand():
    # a = (1, 2), W = [[3, -1]]: contributions z = (3, -2), |z| = (3, 2), sum 5; R = 5 -> (3, 2).
    # The unit that pushes the score down gets positive relevance: influence, whatever its sign.
    layer = Dense(np.array([[3.0, -1.0]]), np.array([4.0]))  # the bias is not used
    step = AbsoluteInfluence().relevance(layer, np.array([[1.0, 2.0]]), np.array([[5.0]]))
    assert_allclose(step.relevance, [[3.0, 2.0]], rtol=1e-15)
    assert_allclose(step.absorbed, [0.0], atol=0)


def test_rap_hidden_layer_by_hand():
    # a = (1, 1, 1, 1, 0); two units, W (out, in) = [[8, 1, 1, -2, 5], [1, 0, 0, -1, -3]], R = (1, -0.5).
    # unit 0: z = (8, 1, 1, -2, 0): P = 10, N = 2, A = 12; R = 1 > 0
    #   relevant part  z+/P R+   = (0.8, 0.1, 0.1, 0, 0)
    #   absolute part  |z-|/A R  = (0, 0, 0, 2/12, 0) = (0, 0, 0, 1/6, 0)
    # unit 1: z = (1, 0, 0, -1, 0): P = 1, N = 1, A = 2; R = -0.5 < 0
    #   irrelevant part |z-|/N R- = (0, 0, 0, -0.5, 0)
    #   absolute part   |z-|/A R  = (0, 0, 0, -0.25, 0)
    # R~ = (0.8, 0.1, 0.1, 1/6 - 3/4, 0) = (0.8, 0.1, 0.1, -7/12, 0), sum 5/12; sum R = 1/2
    # E = 1 * 2/12 + (-0.5) * 1/2 = -1/12 (= sum R~ - sum R); S = inputs 0..3 (input 4 has a = 0): |S| = 4
    # shift = E / 4 = -1/48: R = R~ + 1/48 on S:
    #   (0.8 + 1/48, 0.1 + 1/48, 0.1 + 1/48, -27/48, 0), sum = 1/2
    layer = Dense(np.array([[8.0, 1, 1, -2, 5], [1, 0, 0, -1, -3]]), None)
    step = RAP().relevance(layer, np.array([[1.0, 1, 1, 1, 0]]), np.array([[1.0, -0.5]]))
    expected = [[0.8 + 1 / 48, 0.1 + 1 / 48, 0.1 + 1 / 48, -27 / 48, 0.0]]
    assert_allclose(step.relevance, expected, rtol=1e-14, atol=1e-16)
    assert step.relevance[0, 4] == 0.0  # not in S: not shifted
    assert_allclose(step.absorbed, [0.0], atol=0)
    # the sign split: the unit that inhibits both (input 3) is irrelevant, the others relevant
    assert list(np.sign(step.relevance[0])) == [1, 1, 1, -1, 0]


def test_rap_two_layer_network_by_hand():
    # x = (1, 1, 1); layer 0: W0 = [[1, 2, -1], [1, -3, 1]], no bias: pre-activations (2, -1) -> ReLU (2, 0)
    # layer 2: W1 = [[2, 1]], b1 = 1: f(x) = 2*2 + 1*0 + 1 = 5
    # output layer (absolute influence): |z| = (4, 0) -> R_h = (5, 0); the bias's share stays in the game
    # layer 0, unit 0 (R = 5): z = (1, 2, -1), P = 3, N = 1, A = 4
    #   z+/P R = (5/3, 10/3, 0), |z-|/A R = (0, 0, 5/4); R~ sum 25/4; E = 5/4 over |S| = 3: shift 5/12
    #   R_x = (5/3 - 5/12, 10/3 - 5/12, 5/4 - 5/12) = (15/12, 35/12, 10/12), sum 5 = f(x)
    # unit 1 holds no relevance (R = 0): it sends nothing
    model = L.Sequential([Dense(np.array([[1.0, 2, -1], [1, -3, 1]]), None), ReLU(),
                          Dense(np.array([[2.0, 1]]), np.array([1.0]))])
    e = L.explain(model, np.ones((1, 3)), composites.rap())
    assert_allclose(e.score, [5.0], rtol=1e-15)
    assert_allclose(e.layers[2], [[5.0, 0.0]], rtol=1e-15)
    assert_allclose(e.relevance, [[15 / 12, 35 / 12, 10 / 12]], rtol=1e-14)
    e.ledger.check_exact()


def test_nothing_received_is_absorbed():
    # a = 0: no contribution anywhere, so no unit receives a message; all of R is booked as absorbed
    layer = Dense(np.array([[1.0, -1.0], [2.0, 0.5]]), np.array([1.0, 1.0]))
    step = RAP().relevance(layer, np.zeros((1, 2)), np.array([[0.7, -0.2]]))
    assert_allclose(step.relevance, [[0.0, 0.0]], atol=0)
    assert_allclose(step.absorbed, [0.5], rtol=1e-15)


def test_without_negative_contributions_rap_is_zplus():
    # N = 0 everywhere (a >= 0, w >= 0) and R >= 0: only the relevant part is left, E = 0, no shift: z+ exactly
    rng = np.random.default_rng(3)
    layer = Conv2d(np.abs(rng.normal(size=(3, 2, 3, 3))), rng.normal(size=3), stride=2, padding=1)
    a, R = rng.uniform(0, 1, size=(2, 2, 6, 6)), rng.uniform(0, 1, size=(2, 3, 3, 3))
    assert_allclose(RAP().relevance(layer, a, R).relevance, ZPlus(bias="none").relevance(layer, a, R).relevance,
                    rtol=1e-12)


# ----------------------------------------------------------------------------- properties on networks


def _models():
    rng = np.random.default_rng(_seed("rap", "models"))
    return {"mlp": (nets.random_mlp(rng, (6, 8, 5, 3)), (6,)),
            "cnn-max": (nets.random_cnn(rng), (2, 8, 8)),
            "cnn-avg": (nets.random_cnn(rng, pool="avg"), (2, 8, 8))}


@pytest.mark.parametrize("inputs", ["pixels", "mixed"])
@pytest.mark.parametrize("name", ["mlp", "cnn-max", "cnn-avg"])
def test_every_layer_holds_f_of_x(name, inputs):
    model, shape = _models()[name]
    rng = np.random.default_rng(_seed("rap", name, inputs))
    x = rng.uniform(0, 1, size=(4, *shape)) if inputs == "pixels" else rng.normal(size=(4, *shape))
    e = L.explain(model, x, composites.rap())
    absorbed_above = np.zeros(4)
    for i in reversed(range(len(model))):
        absorbed = e.ledger.entries[i].absorbed
        # relevance leaves the books only where no unit of the layer input receives any (all inputs zero:
        # a dead ReLU layer, whose successors' activity is all bias)
        dead = ~e.activations[i].reshape(4, -1).any(axis=1)
        assert np.all((absorbed == 0) | dead), f"layer {i} absorbed {absorbed} with live inputs"
        absorbed_above += absorbed
        assert_allclose(e.layers[i].reshape(4, -1).sum(axis=1) + absorbed_above, e.score, rtol=1e-12, atol=1e-12,
                        err_msg=f"boundary {i}")
    live = absorbed_above == 0
    assert live.sum() >= 3  # most samples conserve exactly
    assert_allclose(e.relevance.reshape(4, -1).sum(axis=1)[live], e.score[live], rtol=1e-12)


def test_sign_split_on_the_shipped_cnn():
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    x = _shipped_digits(model)
    e = L.explain(model, x, composites.rap())
    assert np.all(e.score > 0)
    last_hidden = e.layers[len(model) - 1]  # after the absolute influence normalisation
    assert np.all(last_hidden >= 0)
    for i in (0, 3, 7):  # below it, the shift makes some units irrelevant (negative)
        assert np.all((e.layers[i] > 0).reshape(len(x), -1).any(axis=1))
        assert np.all((e.layers[i] < 0).reshape(len(x), -1).any(axis=1))
    # most of the positive relevance lies on the digit's strokes (bright pixels)
    on_stroke = np.where(x > 0.5, np.maximum(e.relevance, 0), 0).reshape(len(x), -1).sum(axis=1)
    assert np.all(on_stroke > 0.5 * np.maximum(e.relevance, 0).reshape(len(x), -1).sum(axis=1))


def test_input_rule_and_catalog_name():
    model, shape = _models()["cnn-max"]
    x = np.random.default_rng(5).uniform(0, 1, size=(2, *shape))
    e = L.explain(model, x, composites.rap(input_rule=ZBox(0.0, 1.0)))
    assert type(e.rules[0]).__name__ == "ZBox" and type(e.rules[3]).__name__ == "RAP"
    assert type(e.rules[-1]).__name__ == "AbsoluteInfluence"
    e.ledger.check_exact()
    built = catalog.from_spec("rap")
    assert [type(r).__name__ for r in built.assign(model) if r is not None] == ["RAP", "RAP", "RAP",
                                                                              "AbsoluteInfluence"]
    with pytest.raises(RuleParameterError, match="did you mean 'rap'"):
        catalog.check_spec("rapp")
    with pytest.raises(RuleParameterError, match="input_rule must be a Rule"):
        composites.rap(input_rule="zbox")  # type: ignore[arg-type]
    avg_model, _ = _models()["cnn-avg"]
    assert isinstance(composites.rap().assign(avg_model)[2], LRP0)


# ----------------------------------------------------------------------------- fast == reference

LAYERS = ["dense-bias", "dense-nobias", "dense-wide", "conv3x3-bias", "conv3x3-nobias", "conv-s2-p1-bias",
          "conv-s2-p1-nobias", "conv-s3-uneven", "conv-dil2-p2", "conv-tf-same-s2", "conv-rect-g2"]


@pytest.mark.parametrize("kind", ["mixed", "relu"])
@pytest.mark.parametrize("layer_name", LAYERS)
@pytest.mark.parametrize("rule", [RAP(), AbsoluteInfluence()], ids=repr)
def test_fast_equals_reference(rule, layer_name, kind):
    layer, _, W, b, _ = layer_case(layer_name)
    a, R = make_inputs(layer_name, kind)  # mixed-sign upper relevance
    fast = rule.relevance(layer, a, R)
    assert_relevance_matches(fast, ref.ref_beyond_lrp(rule, layer, a, R, matrices=(W, b)), R)


def _shipped_digits(model, n=3):
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        images = np.asarray(f["images"][:n], dtype=np.float64)
    return images[:, None] * model.metadata["input_scale"] + model.metadata["input_offset"]


def test_shipped_cnn_layer_by_layer_against_the_reference():
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    x = _shipped_digits(model, 1)  # one digit: the reference's message tensors of the first conv are 784 x 9216
    e = L.explain(model, x, composites.rap())
    for i, layer in enumerate(model):
        if not isinstance(layer, (Dense, Conv2d)):
            continue
        a, R = e.activations[i], e.layers[i + 1]
        shape = a.shape[1:]
        W = ref.conv2d_matrix(layer, shape) if isinstance(layer, Conv2d) else ref.dense_matrix(layer, shape)[0]
        R_in, absorbed = ref.ref_beyond_lrp(e.rules[i], layer, a, R, matrices=(W, np.zeros(W.shape[1])))
        assert_allclose(e.layers[i], R_in, rtol=1e-10, atol=1e-13 * np.abs(R_in).max(), err_msg=f"layer {i}")
        assert_allclose(e.ledger.entries[i].absorbed, absorbed, atol=0)


# ----------------------------------------------------------------------------- recorded peer: the authors' code


def test_agrees_with_the_authors_code_on_the_shipped_cnn():
    model = L.load(WEIGHTS / "mnist_cnn.h5")
    x, target, recorded, source = peer_maps("rap")
    assert "Relative_Attributing_Propagation" in source
    mine = L.explain(model, x, ties_first(model, composites.rap()), target=target).relevance
    assert_allclose(mine, recorded, rtol=1e-12, atol=1e-12 * np.abs(recorded).max())
    # the sign split shows in the authors' maps too: relevant and irrelevant pixels in every digit
    assert np.all((recorded > 0).reshape(len(x), -1).any(axis=1))
    assert np.all((recorded < 0).reshape(len(x), -1).any(axis=1))
