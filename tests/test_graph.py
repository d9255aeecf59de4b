"""Graphs: residual sums and concatenations, one backward sweep for graphs and chains.

Evidence: a Sequential explains exactly as the same chain written as a Graph; LRP-0 on a
residual ReLU network with biases equals gradient x input (central differences); the ledger
balances at every node and the relevance is conserved over the graph where tensors fan out;
the proportional rule of a sum against a slow explicit formula; Concat splits exactly;
depth_based counts depth along the longest path.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lrp_ref
from lrp_ref import composites as C
from lrp_ref import rules as R
from lrp_ref.errors import LayerParameterError, ShapeError
from lrp_ref.graph import Graph, Node, Sequential
from lrp_ref.layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lrp_ref.merge import Add, Concat

RTOL = 1e-10


def conv(rng: np.random.Generator, c_in: int, c_out: int, k: int = 3, padding: int = 1) -> Conv2d:
    w = rng.normal(0, 1 / np.sqrt(c_in * k * k), (c_out, c_in, k, k))
    return Conv2d(w, rng.normal(0, 0.2, c_out), padding=padding)


def residual_net(seed: int = 0, projection: bool = False) -> Graph:
    """conv-relu, then a residual block (identity or 1x1 projection shortcut), pooling, dense head."""
    rng = np.random.default_rng(seed)
    c = 4
    nodes = [
        ("stem", conv(rng, 2, c), "input"),
        ("stem_relu", ReLU(), "stem"),
        ("conv1", conv(rng, c, c), "stem_relu"),
        ("relu1", ReLU(), "conv1"),
        ("conv2", conv(rng, c, c), "relu1"),
    ]
    shortcut = "stem_relu"
    if projection:
        nodes.append(("proj", conv(rng, c, c, k=1, padding=0), "stem_relu"))
        shortcut = "proj"
    nodes += [
        ("sum", Add(), ("conv2", shortcut)),
        ("relu2", ReLU(), "sum"),
        ("pool", MaxPool2d(2), "relu2"),
        ("flat", Flatten(), "pool"),
        ("fc", Dense(rng.normal(0, 0.3, (3, c * 3 * 3)), rng.normal(0, 0.2, 3)), "flat"),
    ]
    return Graph(nodes)


def concat_net(seed: int = 1) -> Graph:
    """Two branches from the input, concatenated along channels (an Inception-style block)."""
    rng = np.random.default_rng(seed)
    return Graph([
        ("a", conv(rng, 2, 3), "input"),
        ("a_relu", ReLU(), "a"),
        ("b", conv(rng, 2, 2, k=1, padding=0), "input"),
        ("b_relu", ReLU(), "b"),
        ("cat", Concat(), ("a_relu", "b_relu")),
        ("mix", conv(rng, 5, 3), "cat"),
        ("relu", ReLU(), "mix"),
        ("avg", AvgPool2d(2), "relu"),
        ("flat", Flatten(), "avg"),
        ("fc", Dense(rng.normal(0, 0.3, (4, 3 * 3 * 3)), rng.normal(0, 0.2, 4)), "flat"),
    ])


def inputs(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 2, 6, 6))


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize("nodes, message", [
    ([("a", ReLU(), "b")], r"reads 'b', which is not an earlier node"),
    ([("a", ReLU(), "input"), ("a", ReLU(), "a")], "names must be unique; 'a' appears twice"),
    ([("a", ReLU(), "input"), ("b", ReLU(), "input")], r"'a' feed\(s\) no later node"),
    ([("a", Add(), "input")], r"takes 2 input\(s\); got 1"),
    ([("a", ReLU(), ("input", "input"))], r"takes 1 input\(s\); got 2"),
    ([("input", ReLU(), "input")], "name must be a non-empty str other than 'input'"),
    ([("a", "relu", "input")], "layer must be an lrp_ref layer"),
    ([], "needs at least one node"),
    ([("a", ReLU(), "input"), ("b", ReLU(dtype=np.float32), "a")], "share one dtype"),
])
def test_graph_refuses_malformed_nodes(nodes, message) -> None:
    with pytest.raises(LayerParameterError, match=message):
        Graph(nodes)


def test_sequential_refuses_merge_layers() -> None:
    with pytest.raises(LayerParameterError, match="merges several inputs; a chain has one: build a Graph"):
        Sequential([ReLU(), Add()])


def test_add_refuses_mismatched_shapes() -> None:
    g = Graph([("a", Dense(np.ones((3, 2))), "input"), ("s", Add(), ("a", "input"))])
    with pytest.raises(ShapeError, match=r"node 's' \(Add\).*adds tensors of one shape"):
        g.forward(np.ones((1, 2)))


def test_describe_lists_nodes_and_inputs() -> None:
    text = residual_net().describe()
    assert "Graph (10 nodes" in text
    assert "sum " in text and "Add(2 inputs)" in text and "<- conv2, stem_relu" in text


# ----------------------------------------------------------------------------- one sweep for chains and graphs


@pytest.mark.parametrize("rules", [R.LRP0(), R.Epsilon(0.1), R.Gamma(0.25), R.AlphaBeta(2, 1), C.epsilon_plus_flat()])
def test_sequential_is_a_chain_graph(rules) -> None:
    rng = np.random.default_rng(3)
    layers = [conv(rng, 2, 3), ReLU(), MaxPool2d(2), Flatten(), Dense(rng.normal(size=(2, 27)), rng.normal(size=2))]
    chain = Sequential(layers)
    graph = Graph([Node(f"n{i}", layer, ("input" if i == 0 else f"n{i - 1}",)) for i, layer in enumerate(layers)])
    x = inputs(4)
    a, b = lrp_ref.explain(chain, x, rules), lrp_ref.explain(graph, x, rules)
    for ra, rb in zip(a.layers, b.layers):
        assert_array_equal(ra, rb)
    assert_array_equal(a.ledger.entries[0].absorbed, b.ledger.entries[0].absorbed)


def test_forward_of_a_residual_block_is_the_sum_of_its_branches() -> None:
    g = residual_net(projection=True)
    x = inputs(5)
    stem = np.maximum(g[0].forward(x), 0)
    body = g[4].forward(np.maximum(g[2].forward(stem), 0))
    expected = np.maximum(body + g[5].forward(stem), 0)
    assert_allclose(g.forward_all(x)[g.nodes.index(next(n for n in g.nodes if n.name == "relu2")) + 1], expected,
                    rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- LRP on graphs


def numerical_gradient(model: Graph, x: np.ndarray, target: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    rows = np.arange(x.shape[0])
    for idx in np.ndindex(x.shape[1:]):
        e = np.zeros_like(x)
        e[(slice(None), *idx)] = h
        grad[(slice(None), *idx)] = (model.forward(x + e)[rows, target] - model.forward(x - e)[rows, target]) / (2 * h)
    return grad


@pytest.mark.parametrize("projection", [False, True])
def test_lrp0_on_a_residual_net_is_gradient_times_input(projection: bool) -> None:
    """LRP-0 everywhere, the sum included (no stabiliser): x * df/dx, biases and the fan-out included."""
    g = residual_net(seed=7, projection=projection)
    x = inputs(8)
    e = lrp_ref.explain(g, x, R.LRP0())
    add_rule = e.rules[[n.name for n in g.nodes].index("sum")]
    assert isinstance(add_rule, R.Epsilon)  # a single rule leaves the sum to the profile: Epsilon(1e-6)
    rules = [R.LRP0() if isinstance(layer, (Dense, Conv2d, Add)) else None for layer in g]
    e = lrp_ref.explain(g, x, rules)
    grad = numerical_gradient(g, x, e.target)
    assert_allclose(e.relevance, x * grad, rtol=0, atol=1e-6 * np.abs(x * grad).max())


@pytest.mark.parametrize("make", [residual_net, concat_net])
@pytest.mark.parametrize("rules", [R.LRP0(), R.Epsilon(0.05), R.Gamma(0.25), R.AlphaBeta(2, 1), R.ZPlus(), R.Flat(),
                                   C.epsilon_plus_flat(), C.epsilon_gamma_box(-1.0, 1.0), C.depth_based(-1.0, 1.0)])
def test_ledger_balances_at_every_node_and_conserves_over_the_graph(make, rules) -> None:
    g = make()
    e = lrp_ref.explain(g, inputs(9), rules)
    e.ledger.check_balance()
    e.ledger.check_conservation()
    assert len(e.ledger.entries) == len(g)
    # the input's relevance is the sum of what every node reading it passed back
    readers = [i for i in range(len(g)) if 0 in g.sources(i)]
    assert len(readers) >= 1


def test_fan_out_adds_the_relevance_of_every_consumer() -> None:
    g = residual_net(seed=2)
    e = lrp_ref.explain(g, inputs(3), R.Epsilon(0.01))
    names = [n.name for n in g.nodes]
    t = names.index("stem_relu") + 1  # the tensor read by conv1 and by the sum
    conv1, s = names.index("conv1"), names.index("sum")
    from_conv1 = e.rules[conv1].relevance(g[conv1], e.activations[t], e.layers[conv1 + 1],
                                          z=e.activations[conv1 + 1]).relevance
    packed = g.pack(s, e.activations)
    from_sum = g.unpack(s, e.rules[s].relevance(g[s], packed, e.layers[s + 1], z=e.activations[s + 1]).relevance,
                        e.activations)[1]
    assert_allclose(e.layers[t], from_conv1 + from_sum, rtol=1e-13, atol=1e-13)


def test_sum_rule_against_its_formula() -> None:
    """R_i = a_i / (sum_i a_i + eps sign(sum)) R, written out; the stabiliser's share absorbed."""
    rng = np.random.default_rng(11)
    a = [rng.normal(size=(4, 3, 5)) for _ in range(3)]
    upper = rng.normal(size=(4, 3, 5))
    add = Add(3)
    eps = 0.3
    z = sum(a)
    denominator = z + eps * np.where(z >= 0, 1.0, -1.0)
    expected = [ai / denominator * upper for ai in a]
    step = R.Epsilon(eps).relevance(add, add.pack(a), upper)
    for got, want in zip(add.unpack(step.relevance, [(3, 5)] * 3), expected):
        assert_allclose(got, want, rtol=RTOL, atol=0)
    assert_allclose(step.absorbed, (upper * (eps * np.where(z >= 0, 1.0, -1.0)) / denominator).sum(axis=(1, 2)),
                    rtol=RTOL)


def test_flat_on_a_sum_splits_equally() -> None:
    rng = np.random.default_rng(12)
    a = [rng.normal(size=(2, 6)) for _ in range(2)]
    upper = rng.normal(size=(2, 6))
    add = Add()
    step = R.Flat().relevance(add, add.pack(a), upper)
    for got in add.unpack(step.relevance, [(6,)] * 2):
        assert_allclose(got, upper / 2, rtol=RTOL)


def test_concat_splits_the_relevance_by_slices_exactly() -> None:
    g = concat_net()
    e = lrp_ref.explain(g, inputs(13), R.Epsilon(0.01))
    names = [n.name for n in g.nodes]
    cat = names.index("cat")
    above = e.layers[cat + 1]
    assert_array_equal(e.layers[names.index("a_relu") + 1], above[:, :3])
    assert_array_equal(e.layers[names.index("b_relu") + 1], above[:, 3:])
    assert e.ledger.entries[cat].absorbed.tolist() == [0.0] * 3


def test_depth_based_counts_depth_along_the_longest_path() -> None:
    g = residual_net(projection=True)
    depths = C.linear_depths(g)
    by_name = dict(zip([n.name for n in g.nodes], depths))
    # the projection (depth 2) sits beside conv1 (2) and below conv2 (3); fc is above the sum: 4
    assert by_name == {"stem": 1, "stem_relu": 0, "conv1": 2, "relu1": 0, "conv2": 3, "proj": 2, "sum": 0,
                       "relu2": 0, "pool": 0, "flat": 0, "fc": 4}
    rules = C.depth_based(-1.0, 1.0, n_upper=1).rules_for(g)
    kinds = {n.name: type(r).__name__ for n, r in zip(g.nodes, rules)}
    assert (kinds["stem"], kinds["conv1"], kinds["proj"], kinds["conv2"], kinds["fc"]) == (
        "ZBox", "Gamma", "Gamma", "Epsilon", "LRP0")


def test_presets_give_the_sum_their_stabilised_proportional_rule() -> None:
    g = residual_net()
    s = [n.name for n in g.nodes].index("sum")
    for composite in (C.epsilon_plus(stabilizer=1e-3), C.epsilon_gamma_box(-1.0, 1.0, stabilizer=1e-3)):
        assert composite.rules_for(g)[s] == R.Epsilon(1e-3)
    e = lrp_ref.explain(g, inputs(1), R.Gamma(0.25), profile="innvestigate")
    assert type(e.rules[s]).__name__ == "LRP0"


# ----------------------------------------------------------------------------- batch norm, adaptive pooling, canonize


def batchnorm(rng: np.random.Generator, c: int) -> lrp_ref.BatchNorm2d:
    return lrp_ref.BatchNorm2d(rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2.0, c))


def resnet_block(seed: int = 0) -> Graph:
    """conv-bn-relu, a block conv-bn-relu-conv-bn with a conv-bn projection shortcut, global pooling, dense."""
    rng = np.random.default_rng(seed)
    return Graph([
        ("conv0", conv(rng, 2, 4), "input"), ("bn0", batchnorm(rng, 4), "conv0"), ("relu0", ReLU(), "bn0"),
        ("conv1", conv(rng, 4, 4), "relu0"), ("bn1", batchnorm(rng, 4), "conv1"), ("relu1", ReLU(), "bn1"),
        ("conv2", conv(rng, 4, 4), "relu1"), ("bn2", batchnorm(rng, 4), "conv2"),
        ("down", conv(rng, 4, 4, k=1, padding=0), "relu0"), ("down_bn", batchnorm(rng, 4), "down"),
        ("sum", Add(), ("bn2", "down_bn")), ("relu2", ReLU(), "sum"),
        ("gap", lrp_ref.AdaptiveAvgPool2d(1), "relu2"), ("flat", Flatten(), "gap"),
        ("fc", Dense(rng.normal(0, 0.5, (3, 4)), rng.normal(0, 0.1, 3)), "flat"),
    ])


def test_canonize_merges_every_batch_norm_of_a_resnet_block() -> None:
    g = resnet_block()
    merged = lrp_ref.canonize(g)
    assert merged.metadata["canonized"] == ["bn0", "bn1", "bn2", "down_bn"]
    assert not any(isinstance(layer, lrp_ref.BatchNorm2d) for layer in merged)
    assert [n.inputs for n in merged.nodes if n.name == "sum"] == [("conv2", "down")]
    x = inputs(21)
    assert_allclose(merged.forward(x), g.forward(x), rtol=1e-12, atol=1e-12)
    assert lrp_ref.canonize(merged).metadata["canonized"] == merged.metadata["canonized"]  # nothing more to merge


def test_canonize_keeps_a_batch_norm_whose_layer_feeds_another_node() -> None:
    rng = np.random.default_rng(4)
    g = Graph([("c", conv(rng, 2, 2), "input"), ("bn", batchnorm(rng, 2), "c"), ("s", Add(), ("bn", "c"))])
    assert lrp_ref.canonize(g).metadata.get("canonized") is None


@pytest.mark.parametrize("rules", [R.LRP0(), R.Epsilon(0.05), C.epsilon_plus(), C.epsilon_gamma_box(-1.0, 1.0)])
def test_resnet_block_explains_with_and_without_canonize(rules) -> None:
    g = resnet_block(3)
    x = inputs(22)
    for model in (g, lrp_ref.canonize(g)):
        e = lrp_ref.explain(model, x, rules)
        e.ledger.check_balance()
        e.ledger.check_conservation()


def test_lrp0_on_a_canonized_resnet_block_is_gradient_times_input() -> None:
    g = lrp_ref.canonize(resnet_block(5))
    x = inputs(23)
    rules = [R.LRP0() if isinstance(layer, (Dense, Conv2d, Add, lrp_ref.AdaptiveAvgPool2d)) else None for layer in g]
    e = lrp_ref.explain(g, x, rules)
    grad = numerical_gradient(g, x, e.target)
    assert_allclose(e.relevance, x * grad, rtol=0, atol=1e-6 * np.abs(x * grad).max())


def test_batch_norm_rules_by_profile() -> None:
    g = resnet_block()
    names = [n.name for n in g.nodes]
    ours = lrp_ref.explain(g, inputs(24), R.Epsilon(0.1))
    zen = lrp_ref.explain(g, inputs(24), R.Epsilon(0.1), profile="zennit")
    assert ours.rules[names.index("bn1")] == R.Epsilon(0.1).resolved()
    assert isinstance(zen.rules[names.index("bn1")], R.Pass)
    assert isinstance(C.epsilon_plus().rules_for(g)[names.index("bn1")], R.Pass)  # a composite naming none
    assert C.linear_depths(g)[names.index("bn1")] == 0  # a batch norm is no step of depth


# ----------------------------------------------------------------------------- every layer carries its relevance method


def test_every_layer_of_an_explanation_reproduces_its_step() -> None:
    """layer.relevance(a, R, rule) is what explain computes for that node, for every node of a graph."""
    g = resnet_block(6)
    e = lrp_ref.explain(g, inputs(25), C.epsilon_gamma_box(-1.0, 1.0))
    for i, node in enumerate(g.nodes):
        inputs_i = [e.activations[t] for t in g.sources(i)]
        a = inputs_i if isinstance(node.layer, (Add, Concat)) else inputs_i[0]
        got = node.layer.relevance(a, e.layers[i + 1], e.rules[i])
        got = got if isinstance(got, list) else [got]
        # a tensor read by several nodes holds the sum; compare what this node passed back
        expected = g.unpack(i, e.rules[i].relevance(node.layer, g.pack(i, e.activations), e.layers[i + 1],
                                                    z=e.activations[i + 1]).relevance, e.activations)
        for x, y in zip(got, expected):
            assert_allclose(x, y, rtol=1e-13, atol=1e-15)


def test_layer_relevance_defaults_and_refusals() -> None:
    rng = np.random.default_rng(30)
    dense = Dense(rng.normal(size=(3, 4)), rng.normal(size=3))
    a = rng.normal(size=(2, 4))
    upper = rng.normal(size=(2, 3))
    assert_array_equal(dense.relevance(a, upper), R.LRP0().relevance(dense, a, upper).relevance)
    pool = MaxPool2d(2)
    x = rng.normal(size=(1, 1, 2, 2))
    assert_array_equal(pool.relevance(x, np.ones((1, 1, 1, 1))), (x == x.max()).astype(float))
    parts = Add().relevance([a, 2 * a], R=np.ones((2, 4)))
    assert_allclose(parts[0] + parts[1], np.ones((2, 4)) * (3 * a) / (3 * a + 1e-6 * np.sign(3 * a + 0.0)),
                    rtol=1e-12)
    with pytest.raises(LayerParameterError, match=r"rule WinnerTakesAll\(\) cannot handle this layer"):
        dense.relevance(a, upper, R.WinnerTakesAll())
    with pytest.raises(LayerParameterError, match="must be an lrp_ref rule or None; got str"):
        dense.relevance(a, upper, "epsilon")
