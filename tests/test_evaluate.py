"""Pixel-flipping (lrp_ref.evaluate): the known optimum on a linear model, the perturbed images, reproducibility.

Evidence that can fail:
* on a linear model f(x) = w.x + b with the zero baseline and 1x1 patches, removing pixel j lowers f by exactly
  w_j x_j, so the order that maximises AOPC is w_j x_j descending; its AOPC, computed here from sorted cumulative
  sums, equals LRP-0's measured AOPC, and random orders do worse;
* the tracked scores equal the model on images perturbed here by explicit loops (patch 2, blur baseline);
* the gradient by the layers' adjoints equals central differences on a CNN and a residual graph;
* two runs with the same seed give identical numbers (also through the command line);
* degenerate inputs: an all-zero map is flagged as unranked, a patch that does not tile the image is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from nets import random_cnn
from numpy.testing import assert_allclose
from scipy import ndimage

import lrp_ref
from lrp_ref import Dense, Flatten, Sequential, evaluate, rules
from lrp_ref.cli import main
from lrp_ref.errors import ArgumentError

ROOT = Path(__file__).resolve().parent.parent


def linear_model(rng: np.random.Generator) -> Sequential:
    return Sequential([Flatten(), Dense(rng.normal(size=(3, 36)), rng.normal(size=3))])


def optimal_aopc(model: Sequential, x: np.ndarray, target: np.ndarray, steps: int) -> float:
    """AOPC of the best order on a linear model, zero baseline, 1x1 patches: contributions w_j x_j, largest first."""
    dense = model[1]
    assert isinstance(dense, Dense)
    values = []
    for i in range(len(x)):
        contributions = np.sort(dense.weight[target[i]] * x[i].ravel())[::-1]
        drops = np.concatenate([[0.0], np.cumsum(contributions)[:steps]])
        values.append(drops.mean())
    return float(np.mean(values))


def test_lrp0_is_optimal_on_a_linear_model() -> None:
    rng = np.random.default_rng(0)
    model = linear_model(rng)
    x = rng.normal(size=(8, 1, 6, 6))
    e = lrp_ref.explain(model, x, rules.LRP0())
    assert e.target is not None
    for steps in (36, 10):
        result = evaluate.pixel_flipping(model, x, {"LRP-0": e.relevance}, patch=1, steps=steps, baseline="zero",
                                         random_orders=4)
        lrp0 = result.methods[0]
        assert_allclose(lrp0.aopc, optimal_aopc(model, x, e.target, steps), rtol=1e-12)
        assert lrp0.aopc > result.random.aopc + 3 * result.random.spread
        assert all(lrp0.aopc > a for a in result.random.aopcs)
    # one array, and evaluate() with one rule, rank the same way
    alone = evaluate.pixel_flipping(model, x, e.relevance, patch=1, steps=10, random_orders=2)
    assert_allclose(alone.methods[0].aopc, optimal_aopc(model, x, e.target, 10), rtol=1e-12)
    ev = evaluate.evaluate(model, x, rules.LRP0(), patch=1, steps=10, random_orders=2)
    assert [c.method for c in ev.methods] == ["LRP0()", "gradient x input"]
    assert_allclose(ev.methods[0].aopc, alone.methods[0].aopc, rtol=1e-12)
    assert_allclose(ev.methods[1].aopc, alone.methods[0].aopc, rtol=1e-12)  # LRP-0 = gradient x input here
    # a reversed map (least relevant first) is the worst order
    worst = evaluate.pixel_flipping(model, x, {"reverse": -e.relevance}, patch=1, steps=36, random_orders=2)
    assert worst.methods[0].aopc < worst.random.aopc


def test_scores_equal_the_model_on_explicitly_perturbed_images() -> None:
    rng = np.random.default_rng(1)
    model = random_cnn(rng)
    x = rng.uniform(0, 1, size=(3, 2, 8, 8))
    R = rng.normal(size=x.shape)
    target = np.array([0, 2, 1])
    result = evaluate.pixel_flipping(model, x, {"R": R}, target, patch=2, steps=7, per_step=2, baseline="blur",
                                     blur_sigma=1.5, random_orders=2, batch_size=5)
    blurred = ndimage.gaussian_filter(x, sigma=(0, 0, 1.5, 1.5), mode="nearest")
    for i in range(3):
        sums = [(R[i, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2].sum(), r, c) for r in range(4) for c in range(4)]
        sums.sort(key=lambda s: -s[0])
        for k in range(8):
            img = x[i].copy()
            for _, r, c in sums[:2 * k]:
                img[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = blurred[i, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
            expected = model.forward(img[None])[0, target[i]]
            assert_allclose(result.methods[0].scores[i, k], expected, rtol=1e-12, atol=1e-12)


def numerical_gradient(model: lrp_ref.Graph, x: np.ndarray, target: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    flat = grad.reshape(len(x), -1)
    for j in range(flat.shape[1]):
        step = np.zeros(flat.shape[1])
        step[j] = h
        up = model.forward(x + step.reshape(x.shape[1:]))[np.arange(len(x)), target]
        down = model.forward(x - step.reshape(x.shape[1:]))[np.arange(len(x)), target]
        flat[:, j] = (up - down) / (2 * h)
    return grad


def test_gradient_by_adjoints_equals_central_differences() -> None:
    rng = np.random.default_rng(2)
    model = random_cnn(rng)
    x = rng.uniform(0, 1, size=(2, 2, 8, 8))
    target = np.array([1, 2])
    assert_allclose(evaluate.gradient(model, x, target), numerical_gradient(model, x, target), rtol=0, atol=1e-6)
    resnet = lrp_ref.load(ROOT / "weights" / "mnist_resnet.h5")
    x = rng.uniform(0, 1, size=(1, 1, 28, 28))
    t = np.argmax(resnet.forward(x), axis=1)
    g = evaluate.gradient(resnet, x, t)
    for j in rng.choice(784, size=6, replace=False):  # a few coordinates of the residual graph (batch norm, Add)
        step = np.zeros(784)
        step[j] = 1e-6
        fd = (resnet.forward(x + step.reshape(1, 28, 28))[0, t[0]]
              - resnet.forward(x - step.reshape(1, 28, 28))[0, t[0]]) / 2e-6
        assert_allclose(g.ravel()[j], fd, rtol=0, atol=1e-6)


def test_reproducible_with_a_seed_and_seed_matters() -> None:
    rng = np.random.default_rng(3)
    model = random_cnn(rng)
    x = rng.uniform(0, 1, size=(4, 2, 8, 8))
    R = np.round(rng.normal(size=x.shape))  # ties, broken at random
    a = evaluate.pixel_flipping(model, x, {"R": R}, patch=2, seed=7)
    b = evaluate.pixel_flipping(model, x, {"R": R}, patch=2, seed=7)
    c = evaluate.pixel_flipping(model, x, {"R": R}, patch=2, seed=8)
    assert a.to_dict() == b.to_dict()
    assert a.random.aopcs.tolist() != c.random.aopcs.tolist()
    # ties are broken by keys shared by all methods: equal maps give equal curves
    same = evaluate.pixel_flipping(model, x, {"R": R, "copy": R.copy(), "R2": 2 * R}, patch=2, seed=7)
    assert same.methods[0].scores.tolist() == same.methods[1].scores.tolist() == same.methods[2].scores.tolist()


def test_map_statistics_on_a_hand_checked_map() -> None:
    # channels are summed first: the heatmap is [[1, -1], [2, 0]]
    R = np.array([[[[0.5, -1.0], [2.0, 0.0]], [[0.5, 0.0], [0.0, 0.0]]]])
    share, flips = evaluate.map_statistics(R)
    assert_allclose(share, [3 / 4], rtol=1e-15)
    # pairs carrying relevance on both ends: (1, -1) across, a flip; (1, 2) down, no flip; the 0 pairs do not count
    assert_allclose(flips, [1 / 2], rtol=1e-15)
    share, flips = evaluate.map_statistics(np.zeros((2, 1, 3, 3)))  # an all-zero map: 0 and 0, no NaN
    assert share.tolist() == [0.0, 0.0] and flips.tolist() == [0.0, 0.0]


def test_degenerate_inputs() -> None:
    rng = np.random.default_rng(4)
    model = random_cnn(rng)
    x = rng.uniform(0, 1, size=(3, 2, 8, 8))
    result = evaluate.pixel_flipping(model, x, {"zero": np.zeros_like(x)}, patch=2)
    assert result.methods[0].unranked == 3
    assert "(3 unranked)" in result.table()
    with pytest.raises(ArgumentError, match=r"patch 3 does not divide the image 8x8.*1, 2, 4, 8"):
        evaluate.pixel_flipping(model, x, {"R": x}, patch=3)
    with pytest.raises(ArgumentError, match=r"steps must lie in 1\.\.16"):
        evaluate.pixel_flipping(model, x, {"R": x}, patch=2, steps=17)
    with pytest.raises(lrp_ref.NonFiniteError):
        evaluate.pixel_flipping(model, x, {"R": np.full_like(x, np.nan)}, patch=2)
    with pytest.raises(lrp_ref.ShapeError):
        evaluate.pixel_flipping(model, x, {"R": x[:2]}, patch=2)
    with pytest.raises(lrp_ref.ShapeError, match="non-empty batch"):
        evaluate.pixel_flipping(model, x[:0], {"R": x[:0]}, patch=2)
    one_seed = evaluate.pixel_flipping(model, x, {"R": x}, patch=2, random_orders=1)
    assert "n/a (one seed)" in one_seed.table() and "nan" not in one_seed.table()
    with pytest.raises(ArgumentError, match="baseline must be one of"):
        evaluate.pixel_flipping(model, x, {"R": x}, patch=2, baseline="noise")


def test_bad_arguments_name_what_was_expected() -> None:
    """The Python API refuses bad arguments with lrp_ref's errors naming them, not with NumPy's internals."""
    rng = np.random.default_rng(5)
    model = random_cnn(rng)
    x = rng.uniform(0, 1, size=(2, 2, 8, 8))
    flip = evaluate.pixel_flipping
    with pytest.raises(lrp_ref.ShapeError, match=r"relevance 'R' has images of 4x4; x has 8x8"):
        flip(model, x, {"R": x[:, :, :4, :4]}, patch=2)
    with pytest.raises(lrp_ref.TargetError, match="target must be an int"):
        flip(model, x, {"R": x}, target=1.5)
    for name, value in (("steps", 2.5), ("per_step", 1.5), ("random_orders", 2.0), ("seed", -1)):
        with pytest.raises(ArgumentError, match=f"{name} must be"):
            flip(model, x, {"R": x}, **{name: value})
    for sigma in (-1.0, 0.0, float("nan")):
        with pytest.raises(ArgumentError, match="blur_sigma must be"):
            flip(model, x, {"R": x}, baseline="blur", blur_sigma=sigma)
    with pytest.raises(lrp_ref.ShapeError, match=r"baseline of shape \(3, 3\) does not broadcast to x \(2, 2, 8, 8\)"):
        flip(model, x, {"R": x}, baseline=np.zeros((3, 3)))
    with pytest.raises(ArgumentError, match=r"methods must be"):
        evaluate.evaluate(model, x, 42)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"methods must be"):
        evaluate.evaluate(model, x, ["lrp0", "epsilon"])  # type: ignore[list-item]


def test_cli_writes_plot_and_tables_reproducibly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    args = ["evaluate", "--model", str(ROOT / "weights" / "mnist_mlp.h5"), "--limit", "3", "--rules", "lrp0",
            "epsilon:epsilon=0.25", "--steps", "20", "--random-orders", "2", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr()
    assert "| lrp0 |" in printed.out and "gradient x input" in printed.out
    assert "pixel-flipping [" in printed.err
    for name in ("pixel_flipping.png", "aopc.md", "aopc.json"):
        assert (tmp_path / "a" / name).is_file()
    a = json.loads((tmp_path / "a" / "aopc.json").read_text())
    b = json.loads((tmp_path / "b" / "aopc.json").read_text())
    assert a == b
    # on the MLP (no max pooling) LRP-0 is gradient x input, so both rank the patches alike
    assert_allclose(a["methods"]["lrp0"]["curve"], a["methods"]["gradient x input"]["curve"], rtol=1e-12)
    assert main([*args[:-2], "--patch", "5"]) == 2
    assert "does not divide the image 28x28" in capsys.readouterr().err
    assert main([*args, "--limit", "0"]) == 2
    assert "--limit must be a positive integer" in capsys.readouterr().err


def test_readme_aopc_cells_are_what_the_code_measures() -> None:
    """The README's MLP / zero-baseline column: LRP-0 and random recomputed (30 digits, 100 steps, seed 0)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | CNN zero"))
    column = [cell.strip() for cell in lines[start].split("|")].index("MLP zero")
    table = lines[start:lines.index("", start)]  # the AOPC table, up to the blank line after it
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")]
           for line in table if line.startswith(("| LRP-0 |", "| random (5 seeds, mean"))}
    model = lrp_ref.load(ROOT / "weights" / "mnist_mlp.h5")
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        x = f["images"][:][:, None] / 255.0
    result = evaluate.evaluate(model, x, [("LRP-0", "lrp0")], gradient_x_input=False, patch=2, steps=100,
                               baseline="zero", seed=0, random_orders=5)
    assert row["LRP-0"][column].strip("*") == f"{result.methods[0].aopc:.2f}"
    assert row["random (5 seeds, mean ± s.d.)"][column] == f"{result.random.aopc:.2f} ± {result.random.spread:.2f}"


def test_default_methods_leave_box_rules_out_without_input_bounds(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A model without input_low/input_high (an ONNX import, a torch conversion): the default comparison runs
    without the zB methods instead of failing on a rule the user never asked for; asked for by name, zB is refused."""
    rng = np.random.default_rng(6)
    model = random_cnn(rng)
    assert "input_low" not in model.metadata
    x = rng.uniform(0, 1, size=(2, 2, 8, 8))
    result = evaluate.evaluate(model, x, patch=2, random_orders=2)
    names = {c.method for c in result.methods}
    assert "LRP-0" in names and "gradient x input" in names and not any("zB" in n for n in names), names
    with pytest.raises(lrp_ref.RuleParameterError, match="zbox needs input bounds"):
        evaluate.evaluate(model, x, [("zB", "zbox+epsilon")], patch=2)
    lrp_ref.save(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["images"] = x
        f["labels"] = np.zeros(2, dtype=np.int64)
    status = main(["evaluate", "--model", str(tmp_path / "m.h5"), "--samples", str(tmp_path / "s.h5"),
                   "--preprocessed", "--random-orders", "2", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "left out" in captured.out and "zB" in captured.out
    table = (tmp_path / "out" / "aopc.md").read_text()
    assert "LRP-0" in table and "zB" not in table
