"""explain(start_at=..., neuron= | channel= | start_relevance=): a start at any neuron, channel or boundary.

Evidence that can fail:

* a start at node k equals explaining the truncated model (node k and the
  nodes it depends on, built as their own model) with output_relevance =
  one-hot times the activation computed by that model's own forward pass, on
  the shipped CNN and ResNet and on random graphs with sums and
  concatenations; nodes of other branches get exactly zero;
* LRP-0 from a neuron equals the gradient of that neuron's activation times
  the input (central differences), biases, max pooling, batch norm and the
  residual sums included;
* the ledger balances and conserves against the neuron's activation;
* every rule is linear in the upper relevance with the activations fixed, so a
  channel's explanation is the sum of its neurons' explanations, and a mask of
  several neurons the sum of theirs;
* the four ways of naming a neuron agree; every misuse is refused with a
  message that says what to give.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from nets import random_cnn
from numpy.testing import assert_allclose, assert_array_equal

import lrp_ref
from lrp_ref import composites as C
from lrp_ref import rules as R
from lrp_ref.errors import ArgumentError, NonFiniteError, ShapeError, TargetError
from lrp_ref.graph import Graph, Sequential
from lrp_ref.layers import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dense, ReLU
from lrp_ref.merge import Add, Concat

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Three shipped MNIST digits as model inputs (N, 1, 28, 28)."""
    cnn = lrp_ref.load(WEIGHTS / "mnist_cnn.h5")
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        raw = f["images"][[0, 4, 9]]
    meta = cnn.metadata
    return (raw * meta["input_scale"] + meta["input_offset"])[:, None].astype(np.float64)


@pytest.fixture(scope="module")
def cnn() -> Sequential:
    return lrp_ref.load(WEIGHTS / "mnist_cnn.h5")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def resnet() -> Graph:
    return lrp_ref.load(WEIGHTS / "mnist_resnet.h5")


def box(model: Graph) -> tuple[float, float]:
    return float(model.metadata["input_low"]), float(model.metadata["input_high"])


def truncated(model: Graph, top: int) -> tuple[Graph, list[int]]:
    """Node ``top`` and the nodes it depends on, as their own model (found here by walking the inputs by name)."""
    by_name = {node.name: i for i, node in enumerate(model.nodes)}
    keep, todo = set(), [top]
    while todo:
        i = todo.pop()
        if i not in keep:
            keep.add(i)
            todo += [by_name[s] for s in model.nodes[i].inputs if s != "input"]
    order = sorted(keep)
    return Graph([model.nodes[i] for i in order]), order


def one_hot_start(sub: Graph, x: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """One-hot times the activation, from the truncated model's own forward pass."""
    a = sub.forward(x)
    R0 = np.zeros_like(a)
    R0[(slice(None), *index)] = a[(slice(None), *index)]
    return R0


def active_neuron(model: Graph, x: np.ndarray, top: int) -> tuple[int, ...]:
    """The index (per sample) of the largest activation of the first sample at node ``top``'s output."""
    a = model.forward_all(x)[top + 1][0]
    return tuple(int(v) for v in np.unravel_index(np.argmax(a), a.shape))


def assert_same_as_truncated(model: Graph, x: np.ndarray, rules, top: int, index: tuple[int, ...]) -> None:
    e = lrp_ref.explain(model, x, rules, start_at=model.nodes[top].name, neuron=index)
    sub, order = truncated(model, top)
    expected = lrp_ref.explain(sub, x, [e.rules[i] for i in order],
                               output_relevance=one_hot_start(sub, x, index))
    assert len(e.layers) == top + 2
    assert len(e.ledger.entries) == top + 1
    scale = np.abs(expected.relevance).max()
    for j, i in enumerate(order):  # tensor i + 1 of the model is tensor j + 1 of the truncated model
        assert_allclose(e.layers[i + 1], expected.layers[j + 1], rtol=1e-12, atol=1e-13 * scale)
        assert_allclose(e.ledger.entries[i].absorbed, expected.ledger.entries[j].absorbed, rtol=1e-12,
                        atol=1e-13 * scale)
    for i in set(range(top)) - set(order):  # another branch: zero relevance, a ledger line of zeros
        assert_array_equal(e.layers[i + 1], 0.0)
        assert_array_equal(e.ledger.entries[i].r_out, 0.0)
        assert "does not depend" in e.ledger.entries[i].rule
    assert_allclose(e.relevance, expected.relevance, rtol=1e-12, atol=1e-13 * scale)
    assert_allclose(e.score, expected.score, rtol=1e-13)
    e.ledger.check_balance()
    e.ledger.check_conservation()


# ----------------------------------------------------------------------------- start at node k == truncated model


@pytest.mark.parametrize("top", [0, 1, 2, 3, 4, 5, 7, 8, 9])
def test_shipped_cnn_neuron_equals_truncated_model(cnn, digits, top) -> None:
    rules = C.epsilon_gamma_box(*box(cnn))
    assert_same_as_truncated(cnn, digits, rules, top, active_neuron(cnn, digits, top))


@pytest.mark.parametrize("name", ["conv1", "layer1_bn2", "layer1_downsample_1", "add", "layer2_relu1", "add_2",
                                  "avgpool", "fc"])
@pytest.mark.parametrize("canonized", [False, True])
def test_shipped_resnet_neuron_equals_truncated_graph(resnet, digits, name, canonized) -> None:
    model = lrp_ref.canonize(resnet) if canonized else resnet
    names = [n.name for n in model.nodes]
    if name not in names:  # a merged batch norm: start at the convolution that absorbed it
        name = model.nodes[names.index(name.replace("bn", "conv").replace("downsample_1", "downsample_0"))].name
    top = names.index(name)
    assert_same_as_truncated(model, digits[:2], C.epsilon_gamma_box(*box(model)), top,
                             active_neuron(model, digits[:2], top))


def random_graph(seed: int) -> Graph:
    """A random DAG of Dense, ReLU, Add and Concat nodes on vectors of width 4, every tensor used."""
    rng = np.random.default_rng(seed)
    width = 4
    nodes: list[tuple[str, object, object]] = [("d0", Dense(rng.normal(size=(width, 3)), rng.normal(size=width)),
                                                "input")]
    for k in range(1, 9):
        names = [n[0] for n in nodes if not n[0].startswith("cat")]  # tensors of width 4
        kind = str(rng.choice(["dense", "relu", "add", "concat"]))
        if len(names) < 2 and kind in ("add", "concat"):
            kind = "dense"
        if kind == "add":
            nodes.append((f"add{k}", Add(), tuple(str(s) for s in rng.choice(names, 2, replace=False))))
        elif kind == "concat":
            pair = tuple(str(s) for s in rng.choice(names, 2, replace=False))
            nodes.append((f"cat{k}", Concat(2), pair))
            nodes.append((f"d{k}", Dense(rng.normal(size=(width, 2 * width)) * 0.6, rng.normal(size=width)),
                          f"cat{k}"))
        elif kind == "relu":
            nodes.append((f"relu{k}", ReLU(), str(rng.choice(names))))
        else:
            nodes.append((f"d{k}", Dense(rng.normal(size=(width, width)), rng.normal(size=width)),
                          str(rng.choice(names))))
    used = {s for _, _, ins in nodes for s in ((ins,) if isinstance(ins, str) else ins)}
    loose = [n[0] for n in nodes if n[0] not in used]
    if len(loose) > 1:
        nodes.append(("gather", Concat(len(loose)), tuple(loose)))
        loose = ["gather"]
    n_in = Graph(nodes).shapes((3,))[-1][0]  # type: ignore[arg-type]  # the loose tensor is the last node now
    nodes.append(("out", Dense(rng.normal(size=(3, n_in)), rng.normal(size=3)), loose[0]))
    return Graph(nodes)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rules", [R.Epsilon(0.1), R.AlphaBeta(2, 1), C.epsilon_plus_flat()])
def test_random_graph_neuron_equals_truncated_graph(seed, rules) -> None:
    g = random_graph(seed)
    x = np.random.default_rng(100 + seed).normal(size=(3, 3))
    for top in range(len(g)):
        index = (int(np.random.default_rng(top).integers(g.shapes((3,))[top + 1][0])),)
        assert_same_as_truncated(g, x, rules, top, index)


# ----------------------------------------------------------------------------- LRP-0 == gradient x input of the neuron


def gradient_of_neuron(model: Graph, x: np.ndarray, top: int, index: tuple[int, ...], h: float = 1e-6) -> np.ndarray:
    """d a_index / d x by central differences, every input entry of every sample perturbed in one batch."""
    sub, _ = truncated(model, top)
    n, shape = x.shape[0], x.shape[1:]
    size = int(np.prod(shape))
    steps = np.eye(size).reshape(size, *shape) * h
    grad = np.empty_like(x)
    for s in range(n):
        plus = sub.forward(x[s] + steps)[(slice(None), *index)]
        minus = sub.forward(x[s] - steps)[(slice(None), *index)]
        grad[s] = ((plus - minus) / (2 * h)).reshape(shape)
    return grad


def lrp0_everywhere(model: Graph) -> list[R.Rule | None]:
    """LRP-0 on every layer with a rule choice (the sums and batch norms too: no stabiliser anywhere)."""
    linear = (Dense, Conv2d, Add, BatchNorm2d, AdaptiveAvgPool2d)
    return [R.LRP0() if isinstance(layer, linear) else None for layer in model]


@pytest.mark.parametrize("top", [0, 3, 4, 7])
def test_lrp0_from_a_cnn_neuron_is_its_gradient_times_input(cnn, digits, top) -> None:
    x = digits[:2]
    index = active_neuron(cnn, x, top)
    e = lrp_ref.explain(cnn, x, lrp0_everywhere(cnn), start_at=top, neuron=index)
    expected = x * gradient_of_neuron(cnn, x, top, index)
    assert np.abs(expected).max() > 0
    assert_allclose(e.relevance, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["layer1_bn2", "add", "layer2_relu1", "add_1"])
def test_lrp0_from_a_resnet_neuron_is_its_gradient_times_input(resnet, digits, name) -> None:
    x = digits[:1]
    top = [n.name for n in resnet.nodes].index(name)
    index = active_neuron(resnet, x, top)
    e = lrp_ref.explain(resnet, x, lrp0_everywhere(resnet), start_at=name, neuron=index)
    expected = x * gradient_of_neuron(resnet, x, top, index)
    assert np.abs(expected).max() > 0
    assert_allclose(e.relevance, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


# ----------------------------------------------------------------------------- the ledger at a neuron


@pytest.mark.parametrize("rules", [R.LRP0(), R.Epsilon(0.25), R.Gamma(0.25), R.AlphaBeta(2, 1), R.Flat(),
                                   C.epsilon_gamma_box(-1.0, 1.0), C.epsilon_alpha2_beta1_flat()])
def test_ledger_starts_at_the_neurons_activation_and_balances(rules) -> None:
    model = random_cnn(np.random.default_rng(3))
    x = np.random.default_rng(4).uniform(-1, 1, size=(4, 2, 8, 8))
    a = model.forward_all(x)[4]  # output of layer 3, the convolution before the second ReLU
    e = lrp_ref.explain(model, x, rules, start_at=3, neuron=(2, 1, 0))
    assert_allclose(e.score, a[:, 2, 1, 0], rtol=0, atol=0)
    assert_allclose(e.ledger.start, a[:, 2, 1, 0], rtol=0, atol=0)
    e.ledger.check_balance()
    e.ledger.check_conservation()
    assert "start relevance at '3'" in e.ledger.table()
    assert len(e.ledger.entries) == 4


def test_bias_free_lrp0_from_a_neuron_conserves_exactly() -> None:
    model = random_cnn(np.random.default_rng(5), bias=False)
    x = np.random.default_rng(6).uniform(-1, 1, size=(3, 2, 8, 8))
    e = lrp_ref.explain(model, x, R.LRP0(), start_at=4, channel=1)
    e.ledger.check_exact()
    assert_allclose(e.relevance.reshape(3, -1).sum(axis=1), model.forward_all(x)[5][:, 1].reshape(3, -1).sum(axis=1),
                    rtol=1e-12)


# ----------------------------------------------------------------------------- linearity: channel, mask, explicit start


@pytest.mark.parametrize("rules", [R.LRP0(), R.Epsilon(0.25), R.Gamma(0.25), R.AlphaBeta(2, 1), R.ZPlus(), R.Flat(),
                                   C.epsilon_gamma_box(-1.0, 1.0)])
def test_a_channel_is_the_sum_of_its_neurons(rules) -> None:
    model = random_cnn(np.random.default_rng(8))
    x = np.random.default_rng(9).uniform(-1, 1, size=(2, 2, 8, 8))
    channel = lrp_ref.explain(model, x, rules, start_at=1, channel=2)  # ReLU output, (4, 8, 8)
    parts = [lrp_ref.explain(model, x, rules, start_at=1, neuron=(2, i, j)).relevance
             for i in range(8) for j in range(8)]
    total = np.sum(parts, axis=0)
    assert_allclose(channel.relevance, total, rtol=1e-10, atol=1e-12 * np.abs(total).max())
    assert_allclose(channel.score, model.forward_all(x)[2][:, 2].sum(axis=(1, 2)), rtol=1e-12)


def test_a_mask_is_the_sum_of_its_neurons_and_start_relevance_is_linear(cnn, digits) -> None:
    x = digits[:2]
    rules = C.epsilon_gamma_box(*box(cnn))
    picks = [(0, 3, 4), (7, 10, 2), (15, 0, 0)]
    mask = np.zeros((16, 24, 24), dtype=bool)
    for p in picks:
        mask[p] = True
    both = lrp_ref.explain(cnn, x, rules, start_at=0, neuron=mask)
    total = sum(lrp_ref.explain(cnn, x, rules, start_at=0, neuron=p).relevance for p in picks)
    assert_allclose(both.relevance, total, rtol=1e-10, atol=1e-12 * np.abs(total).max())
    R0 = np.random.default_rng(1).normal(size=(2, 16, 24, 24))
    one = lrp_ref.explain(cnn, x, rules, start_at=0, start_relevance=R0)
    three = lrp_ref.explain(cnn, x, rules, start_at=0, start_relevance=-3 * R0)
    assert_allclose(three.relevance, -3 * one.relevance, rtol=1e-12, atol=1e-14 * np.abs(one.relevance).max())
    assert_array_equal(one.layers[-1], R0)


def test_four_ways_to_name_a_neuron_agree(cnn, digits) -> None:
    x = digits[:2]
    index = (5, 2, 1)
    flat = int(np.ravel_multi_index(index, (32, 8, 8)))
    mask = np.zeros((32, 8, 8), dtype=bool)
    mask[index] = True
    a = cnn.forward_all(x)[4]
    given = np.where(mask, a, 0.0)
    runs = [lrp_ref.explain(cnn, x, R.Epsilon(0.1), start_at=start, **how)
            for start, how in ((3, {"neuron": index}), ("3", {"neuron": flat}), (3, {"neuron": mask}),
                               ("3", {"start_relevance": given}))]
    for e in runs[1:]:
        assert_array_equal(e.relevance, runs[0].relevance)
    assert runs[0].start_at == "3"
    assert runs[0].description == ("neuron (5, 2, 1) (flat 337) of the output of layer 3 (Conv2d(16 -> 32, 5x5, "
                                   "bias)), start = its activation")
    assert runs[0].target is None


def test_start_at_the_output_node_is_the_value_start_whatever_the_profile(cnn, digits) -> None:
    x = digits[:2]
    by_target = lrp_ref.explain(cnn, x, R.Epsilon(0.1), target=3)
    by_neuron = lrp_ref.explain(cnn, x, R.Epsilon(0.1), start_at=9, neuron=3)
    for r1, r2 in zip(by_target.layers, by_neuron.layers):
        assert_array_equal(r1, r2)
    # zennit starts an output explanation at 1; a start_at start is the activation under every profile
    zennit = lrp_ref.explain(cnn, x, R.Epsilon(0.1), target=3, profile="zennit")
    zennit_at = lrp_ref.explain(cnn, x, R.Epsilon(0.1), start_at=9, neuron=3, profile="zennit")
    scale = zennit.output[:, 3][:, None, None, None]
    assert_allclose(zennit_at.relevance, zennit.relevance * scale, rtol=1e-12,
                    atol=1e-14 * np.abs(zennit_at.relevance).max())
    assert "profile lrp_ref" in by_target.description and by_target.start_at is None


def test_an_inactive_neuron_explains_to_zero(cnn, digits) -> None:
    x = digits[:1]
    a = cnn.forward_all(x)[2][0]  # ReLU output of layer 1
    index = tuple(int(v) for v in np.argwhere(a == 0)[0])
    e = lrp_ref.explain(cnn, x, R.Epsilon(0.1), start_at=1, neuron=index)
    assert_array_equal(e.relevance, 0.0)
    assert_array_equal(e.score, 0.0)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"start_at": 3, "neuron": 0, "target": 1}, ArgumentError, "target selects an output neuron"),
    ({"start_at": 3, "neuron": 0, "output_relevance": np.ones((1, 10))}, ArgumentError, "give start_relevance="),
    ({"start_at": 3}, ArgumentError, "exactly one of neuron=, channel= or start_relevance=.*got none"),
    ({"start_at": 3, "neuron": 0, "channel": 1}, ArgumentError, "got neuron and channel"),
    ({"neuron": 4}, ArgumentError, "start_at=, which is missing.*target="),
    ({"channel": 4}, ArgumentError, "channel= selects"),
    ({"start_relevance": np.ones((1, 10))}, ArgumentError, "output_relevance="),
    ({"start_at": 10, "neuron": 0}, TargetError, r"nodes 0\.\.9"),
    ({"start_at": -1, "neuron": 0}, TargetError, r"nodes 0\.\.9"),
    ({"start_at": True, "neuron": 0}, ArgumentError, "node name"),
    ({"start_at": "input", "neuron": 0}, TargetError, "model input"),
    ({"start_at": "30", "neuron": 0}, TargetError, r"names no node.*0\.\.9"),
    ({"start_at": 3, "neuron": 2048}, TargetError, r"flat index must lie in \[0, 2047\]"),
    ({"start_at": 3, "neuron": -1}, TargetError, r"\[0, 2047\]"),
    ({"start_at": 3, "neuron": (32, 0, 0)}, TargetError, r"axis 0 runs 0\.\.31"),
    ({"start_at": 3, "neuron": (1, 2)}, TargetError, r"needs 3 int\(s\).*\(32, 8, 8\)"),
    ({"start_at": 3, "neuron": [1, 2, 3]}, ArgumentError, "index tuple"),
    ({"start_at": 3, "neuron": 1.0}, ArgumentError, "flat index"),
    ({"start_at": 3, "neuron": np.zeros((32, 8), dtype=bool)}, ShapeError, r"per-sample shape \(32, 8, 8\)"),
    ({"start_at": 3, "neuron": np.zeros((32, 8, 8), dtype=bool)}, TargetError, "selects no neuron"),
    ({"start_at": 3, "channel": 32}, TargetError, r"32 channels.*\[0, 31\]"),
    ({"start_at": 3, "channel": 1.5}, ArgumentError, "channel must be an int"),
    ({"start_at": 7, "channel": 0}, ShapeError, r"shape \(100,\); use neuron="),
    ({"start_at": 3, "start_relevance": np.ones((2, 32, 8, 8))}, ShapeError, r"\(1, 32, 8, 8\).*got \(2, 32, 8, 8\)"),
    ({"start_at": 3, "start_relevance": np.full((1, 32, 8, 8), np.nan)}, NonFiniteError, "start_relevance"),
])
def test_misuse_is_refused_clearly(cnn, digits, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        lrp_ref.explain(cnn, digits[:1], R.Epsilon(0.1), **kwargs)


def test_unknown_node_name_suggests_the_nearest(resnet, digits) -> None:
    with pytest.raises(TargetError, match=r"did you mean 'layer1_relu2'.*its nodes are conv1, bn1"):
        lrp_ref.explain(resnet, digits[:1], R.Epsilon(0.1), start_at="layer1_relu_2", neuron=0)


class Untouchable(R.LRP0):
    """A rule that fails if it is ever asked for relevance."""

    def relevance(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a node above the start was swept")


def test_nodes_above_the_start_are_not_swept(cnn, digits) -> None:
    rules = [None] * len(cnn)
    rules[0], rules[3], rules[7], rules[9] = R.Epsilon(0.1), R.Epsilon(0.1), Untouchable(), Untouchable()
    with pytest.raises(AssertionError, match="above the start"):
        lrp_ref.explain(cnn, digits[:1], rules)
    e = lrp_ref.explain(cnn, digits[:1], rules, start_at=4, channel=0)
    assert len(e.layers) == 6 and len(e.ledger.entries) == 5
