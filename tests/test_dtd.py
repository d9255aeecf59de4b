"""The deep Taylor view (lrp_ref.dtd): Taylor terms at a numerically found root equal the rules' messages.

Evidence that can fail:
* on random dense and conv layers, the root brentq finds along the rule's search direction is a zero of the
  neuron's pre-activation computed here from the layer's forward pass; the gradient there, computed here by
  central differences of the relevance model c_k max(0, z_k), times (a - root), equals the rule's messages
  R_{j<-k} (from rules.py with the start relevance one-hot at k) to 1e-10: z+ on ReLU inputs, zB on box
  inputs, w-square on unbounded inputs, gamma and epsilon on ReLU inputs;
* a planted wrong root (the line walked the other way, a + t v) and a flipped search direction are detected;
* each failure report (root outside the domain, no root, kink crossed, negative inputs, inactive neuron)
  triggers on a case built for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import Conv2d, Dense, dtd, rules
from lrp_ref.cli import main
from lrp_ref.errors import ArgumentError, NonFiniteError

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-10


def dense(rng: np.random.Generator) -> Dense:
    return Dense(rng.normal(size=(6, 9)), rng.normal(scale=0.5, size=6))


def conv(rng: np.random.Generator) -> Conv2d:
    return Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(scale=0.3, size=4), stride=2, padding=1)


def active_neurons(layer: Any, a: np.ndarray, n: int = 3) -> list[tuple[int, ...]]:
    z = layer.forward(a[None])[0]
    flat = [f for f in np.argsort(-z.ravel())[:n] if z.ravel()[f] > 0]
    assert flat, "no active neuron"
    return [tuple(int(i) for i in np.unravel_index(f, z.shape)) for f in flat]


def relevance_model(layer: Any, k: tuple[int, ...], c: float, points: np.ndarray, shift: float) -> np.ndarray:
    """c max(0, z_k + shift) at a batch of points, from the layer's forward pass (bias included)."""
    return c * np.maximum(0.0, layer.forward(points)[(slice(None), *k)] + shift)


def fd_terms(layer: Any, a: np.ndarray, k: tuple[int, ...], e: dtd.TaylorExpansion, h: float = 1e-3) -> np.ndarray:
    """(dR/da_j)(a_j - root_j), the gradient by central differences at the middle of the segment (linear there).

    At the middle the bias and stabiliser neurons have moved by half their way: ``shift`` adds that to z_k."""
    assert e.root is not None and e.t is not None
    mid = (a + e.root) / 2
    shift = -e.bias * e.t / 2 * e.direction.bias + e.direction.stabilizer * (1 - e.t / 2)
    eye = np.eye(a.size).reshape(a.size, *a.shape)
    grad = (relevance_model(layer, k, e.c, mid + h * eye, shift)
            - relevance_model(layer, k, e.c, mid - h * eye, shift)) / (2 * h)
    return grad.reshape(a.shape) * (a - e.root)


def messages(layer: Any, a: np.ndarray, k: tuple[int, ...], rule: rules.Rule) -> tuple[np.ndarray, float]:
    R = np.zeros((1, *layer.output_shape(a.shape)))
    R[(0, *k)] = 1.0
    step = rule.relevance(layer, a[None], R)
    return step.relevance[0], float(step.absorbed[0])


def assert_expansion_matches_rule(layer: Any, a: np.ndarray, rule: rules.Rule) -> None:
    for k in active_neurons(layer, a):
        c = dtd.check(layer, a, k, rule)
        assert c.ok, c.table()
        e = c.expansion
        assert e.t is not None and e.root is not None
        # the root is a zero of the neuron, from the layer itself (stabiliser neuron a_eps = 1 - t included)
        zk = layer.forward(e.root[None])[(0, *k)] + e.bias * (-e.t * e.direction.bias) + \
            e.direction.stabilizer * (1 - e.t)
        assert abs(zk) <= 1e-12 * max(1.0, abs(e.z))
        # the Taylor terms by finite differences of the relevance model equal the rule's messages
        msg, absorbed = messages(layer, a, k, rule)
        assert_allclose(fd_terms(layer, a, k, e), msg, rtol=0, atol=TOL)
        assert_allclose(e.terms, msg, rtol=0, atol=TOL)
        assert_allclose(e.bias_term + e.stabilizer_term, absorbed, rtol=0, atol=TOL)
        # first order is exact: R_k = R(root) + sum of terms
        assert_allclose(e.value_at_root + e.terms.sum() + e.bias_term + e.stabilizer_term, 1.0, rtol=0, atol=TOL)


RELU_RULES = [rules.ZPlus(), rules.AlphaBeta(1, 0), rules.Gamma(0.25), rules.Gamma(2.0), rules.Epsilon(0.1),
              rules.LRP0(), rules.ZPlus(split="weights"), rules.Epsilon(0.3, stabilizer=0.05)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule", RELU_RULES, ids=repr)
def test_relu_input_rules_on_dense_and_conv(seed: int, rule: rules.Rule) -> None:
    rng = np.random.default_rng(seed)
    assert_expansion_matches_rule(dense(rng), np.maximum(rng.normal(size=9), 0), rule)
    assert_expansion_matches_rule(conv(rng), np.maximum(rng.normal(size=(2, 7, 7)), 0), rule)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zbox_on_box_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = Dense(rng.normal(size=(6, 9)), -np.abs(rng.normal(scale=0.5, size=6)))  # b <= 0, as DTD assumes
    assert_expansion_matches_rule(layer, rng.uniform(-1, 2, size=9), rules.ZBox(-1.0, 2.0))
    # per-pixel bounds on a convolution
    low = rng.uniform(-1, 0, size=(2, 7, 7))
    high = low + rng.uniform(0.5, 2, size=(2, 7, 7))
    a = low + rng.uniform(0, 1, size=low.shape) * (high - low)
    c = Conv2d(rng.normal(size=(4, 2, 3, 3)), -np.abs(rng.normal(scale=0.3, size=4)), stride=2, padding=1)
    assert_expansion_matches_rule(c, a, rules.ZBox(low[None], high[None]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule", [rules.WSquare(), rules.WSquare(bias="square")], ids=repr)
def test_wsquare_on_unbounded_inputs(seed: int, rule: rules.Rule) -> None:
    rng = np.random.default_rng(seed)
    assert_expansion_matches_rule(dense(rng), rng.normal(scale=3, size=9), rule)
    assert_expansion_matches_rule(conv(rng), rng.normal(scale=3, size=(2, 7, 7)), rule)


def test_search_directions_are_the_papers() -> None:
    rng = np.random.default_rng(5)
    layer = dense(rng)
    a = np.maximum(rng.normal(size=9), 0)
    w = layer.weight[2]
    assert_allclose(dtd.search_direction(layer, a, 2, rules.ZPlus()).v, a * (w > 0), rtol=0, atol=0)
    assert_allclose(dtd.search_direction(layer, a, 2, rules.Gamma(0.5)).v, a * (1 + 0.5 * (w > 0)), rtol=0, atol=0)
    assert_allclose(dtd.search_direction(layer, a, 2, rules.Epsilon(0.1)).v, a, rtol=0, atol=0)
    assert_allclose(dtd.search_direction(layer, a, 2, rules.WSquare()).v, w, rtol=0, atol=0)
    zb = dtd.search_direction(layer, a, 2, rules.ZBox(-1.0, 3.0)).v
    assert_allclose(zb, np.where(w > 0, a + 1, a - 3), rtol=0, atol=0)
    # as gamma grows, the gamma root tends to the z+ root
    k = active_neurons(layer, a)[0]
    t_plus = dtd.expand(layer, a, k, rules.ZPlus()).root
    t_big = dtd.expand(layer, a, k, rules.Gamma(1e7)).root
    assert t_plus is not None and t_big is not None
    assert_allclose(t_big, t_plus, rtol=0, atol=1e-5)


def test_planted_wrong_roots_are_detected() -> None:
    rng = np.random.default_rng(3)
    layer = conv(rng)
    a = np.maximum(rng.normal(size=(2, 7, 7)), 0)
    k = active_neurons(layer, a)[0]
    good = dtd.expand(layer, a, k, rules.ZPlus())
    assert good.t is not None and good.t > 0
    # the line walked the other way: a + t v is no root
    flipped = dtd.check(layer, a, k, rules.ZPlus(), t=-good.t)
    assert not flipped.ok and {"not_a_root", "mismatch"} <= {f.kind for f in flipped.failures}
    # past the zero level: a root of max(0, z), but the segment crosses the kink
    beyond = dtd.check(layer, a, k, rules.ZPlus(), t=2 * good.t)
    assert {"not_linear", "mismatch"} <= {f.kind for f in beyond.failures}
    # the search direction flipped to the negative weights: the root lies behind a, the terms are not z+'s
    w = good.weights
    wrong = dtd.Direction(a * (w < 0), 0.0, 0.0, "a_j 1[w_jk < 0]", "relu")
    behind = dtd.check(layer, a, k, rules.ZPlus(), direction=wrong)
    assert {"root_behind", "mismatch"} <= {f.kind for f in behind.failures}
    assert behind.max_error > 1e-3


def test_failure_reports() -> None:
    box = rules.ZBox(0.0, 1.0)
    # zB root outside the box: a large positive bias puts the zero level beyond l
    layer = Dense(np.array([[1.0, 1.0]]), np.array([5.0]))
    c = dtd.check(layer, np.array([0.5, 0.5]), 0, box)
    assert [f.kind for f in c.failures] == ["outside_domain"]
    assert c.max_error <= TOL  # the algebra still holds: only the assumption fails
    # no root on the line: the direction is orthogonal to the weights
    layer = Dense(np.array([[1.0, -1.0]]), np.array([2.0]))
    c = dtd.check(layer, np.array([0.0, 1.0]), 0, box)
    assert "no_root" in {f.kind for f in c.failures} and c.expansion.root is None
    # z+ on inputs that are not ReLU outputs
    layer = Dense(np.array([[1.0, 1.0, -1.0]]), np.array([0.0]))
    c = dtd.check(layer, np.array([2.0, -0.5, -1.0]), 0, rules.ZPlus())
    assert "inputs_outside_domain" in {f.kind for f in c.failures}
    # an inactive neuron has nothing to expand
    with pytest.raises(ArgumentError, match="not active"):
        dtd.expand(layer, np.array([0.0, 0.0, 1.0]), 0, rules.ZPlus())
    with pytest.raises(ArgumentError, match="no deep Taylor derivation"):
        dtd.expand(layer, np.array([2.0, 0.0, 0.0]), 0, rules.AlphaBeta(2, 1))
    with pytest.raises(ArgumentError, match="neuron must be"):
        dtd.expand(layer, np.array([2.0, 0.0, 0.0]), 3, rules.ZPlus())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused_by_name(bad: float) -> None:
    """A NaN or inf input is named as such, not reported as an inactive neuron with z_k = nan."""
    layer = Dense(np.array([[1.0, 1.0]]), np.array([0.5]))
    with pytest.raises(NonFiniteError, match="must be finite"):
        dtd.check(layer, np.array([1.0, bad]), 0, rules.ZPlus())


def test_bad_arguments_are_refused_not_passed() -> None:
    """A NaN relevance or root parameter must not yield a check that reports ok; bad types are named."""
    layer = Dense(np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([0.5, 0.0]))
    a = np.array([1.0, 1.0])
    assert dtd.check(layer, a, 0, rules.ZPlus()).ok  # the valid call
    for relevance in (float("nan"), float("inf"), "2", True):
        with pytest.raises(ArgumentError, match="relevance must be"):
            dtd.check(layer, a, 0, rules.ZPlus(), relevance=relevance)
    for t in (float("nan"), float("inf")):
        with pytest.raises(ArgumentError, match="t must be"):
            dtd.check(layer, a, 0, rules.ZPlus(), t=t)
    for neuron in (0.0, True, None, "0"):
        with pytest.raises(ArgumentError, match="neuron must be"):
            dtd.check(layer, a, neuron, rules.ZPlus())
    with pytest.raises(ArgumentError, match="rtol must be"):
        dtd.check(layer, a, 0, rules.ZPlus(), rtol=-1.0)


def test_shipped_models_and_table() -> None:
    model = lrp_ref.load(ROOT / "weights" / "mnist_mlp.h5")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(1, 1, 28, 28))
    k = int(np.argmax(model.forward_all(x)[4][0]))  # the most active neuron of the hidden Dense layer 3
    checks = [dtd.check_model(model, x, 3, k, rule) for rule in (rules.ZPlus(), rules.Gamma(0.25))]
    for c in checks:
        assert c.ok, c.table()
    first = dtd.check_model(model, x, 1, int(np.argmax(model.forward_all(x)[2][0])), rules.ZBox(0.0, 1.0))
    assert first.ok, first.table()
    table = dtd.summary_table([first])
    assert "ZBox" in table and "ok" in table
    assert "max |Taylor term - message|" in first.table()


def test_cli_prints_the_table_and_writes_the_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    status = main(["dtd", "--model", str(ROOT / "weights" / "mnist_cnn.h5"), "--input", "sample:3", "--layer", "0",
                   "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    for name in ("ZPlus()", "Gamma(gamma=0.25)", "Epsilon(epsilon=0.1)", "WSquare()", "ZBox("):
        assert name in out
    assert (tmp_path / "dtd.png").is_file()
    status = main(["dtd", "--model", str(ROOT / "weights" / "mnist_cnn.h5"), "--layer", "1"])
    assert status == 2
    err = capsys.readouterr().err
    assert "Dense or Conv2d" in err
    assert "--layer 1 is ReLU(); the DTD view takes a Dense or Conv2d layer: 0, 3, 7, 9" in err, err  # said once


def test_cli_default_rules_skip_zb_without_input_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the first layer of a model that declares no input bounds, the default rules leave zB out (no error)."""
    rng = np.random.default_rng(3)
    model = lrp_ref.Sequential([Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)), lrp_ref.ReLU(),
                                lrp_ref.Flatten(), Dense(rng.normal(size=(2, 3 * 4 * 4)), None)])
    lrp_ref.save(model, tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", rng.uniform(0, 1, size=(2, 6, 6)))
    status = main(["dtd", "--model", str(tmp_path / "m.h5"), "--input", str(tmp_path / "x.npy"), "--layer", "0"])
    captured = capsys.readouterr()
    assert status in (0, 1), captured.err
    assert "WSquare()" in captured.out and "ZBox" not in captured.out
    status = main(["dtd", "--model", str(tmp_path / "m.h5"), "--input", str(tmp_path / "x.npy"), "--layer", "0",
                   "--rule", "zb"])
    assert status == 2 and "zB needs the input bounds" in capsys.readouterr().err  # asked for by name: refused
