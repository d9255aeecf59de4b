"""``lrp-ref explain --start-at NODE --neuron K | --channel C``: an intermediate neuron from the command line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref
from lrp_ref import catalog
from lrp_ref._cli_inputs import bounds
from lrp_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
RESNET = ROOT / "weights" / "mnist_resnet.h5"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def digits(model: lrp_ref.Graph, ks: list[int]) -> np.ndarray:
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        raw = f["images"][ks]
    meta = model.metadata
    return (raw.astype(np.float64) * meta["input_scale"] + meta["input_offset"])[:, None]


@pytest.mark.parametrize("neuron", ["5,2,1", "337"])
def test_a_cnn_neuron_from_the_command_line(capsys, tmp_path, neuron) -> None:
    code, out, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0", "--rule", "epsilon_gamma_box",
                         "--start-at", "3", "--neuron", neuron, "--out", tmp_path)
    assert code == 0, err
    model = lrp_ref.load(CNN)
    x = digits(model, [0])
    expected = lrp_ref.explain(model, x, catalog.from_spec("epsilon_gamma_box", bounds(model)), start_at=3,
                               neuron=(5, 2, 1))
    assert_array_equal(np.load(tmp_path / "relevance.npy", allow_pickle=False), expected.relevance[0])
    assert ("explained neuron (5, 2, 1) (flat 337) of the output of layer 3 (Conv2d(16 -> 32, 5x5, bias)), "
            f"start = its activation (start relevance {expected.score[0]:.6g})") in out
    assert "start relevance at '3'" in (tmp_path / "ledger.txt").read_text(encoding="utf-8")
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "overlay.png").is_file()


def test_a_resnet_channel_for_a_batch(capsys, tmp_path) -> None:
    code, out, err = cli(capsys, "explain", "--model", RESNET, "--input", "sample:0,5", "--rule", "epsilon:epsilon=0.1",
                         "--start-at", "layer2_relu1", "--channel", "3", "--out", tmp_path)
    assert code == 0, err
    model = lrp_ref.load(RESNET)
    expected = lrp_ref.explain(model, digits(model, [0, 5]), lrp_ref.rules.Epsilon(0.1), start_at="layer2_relu1",
                               channel=3)
    assert_array_equal(np.load(tmp_path / "relevance.npy", allow_pickle=False), expected.relevance)
    assert "explaining channel 3 of the output of node 'layer2_relu1' (ReLU())" in out
    assert f"sample 001 (sample:5): start relevance {expected.score[1]:.6g}, sum R" in out


def test_a_graph_node_by_its_index(capsys, tmp_path) -> None:
    code, out, err = cli(capsys, "explain", "--model", RESNET, "--input", "sample:0", "--rule", "lrp0",
                         "--start-at", "14", "--channel", "0", "--out", tmp_path)
    assert code == 0, err
    assert "node 'layer2_relu1'" in out


@pytest.mark.parametrize(("args", "fragment"), [
    (("--start-at", "3"), "--start-at 3 needs one of --neuron K (or A,B,C) and --channel C, not neither"),
    (("--start-at", "3", "--neuron", "1", "--channel", "1"), "not both"),
    (("--neuron", "1"), "--neuron needs --start-at NODE"),
    (("--channel", "1"), "--channel needs --start-at NODE"),
    (("--start-at", "3", "--neuron", "1", "--target", "2"), "--target and --start-at exclude each other"),
    (("--start-at", "3", "--neuron", "5,2,9"), "--neuron (5, 2, 9) is out of range for layer 3"),
    (("--start-at", "3", "--neuron", "5,2"), "needs 3 int(s)"),
    (("--start-at", "relu", "--neuron", "1"), "--start-at 'relu' names no node of this model"),
    (("--start-at", "7", "--channel", "1"), "use --neuron to pick one of its entries"),
    (("--start-at", "3", "--neuron", "-1"), "expected a flat index K or an index A,B,C"),
])
def test_start_misuse_is_one_line(capsys, tmp_path, args, fragment) -> None:
    code, _, err = cli(capsys, "explain", "--model", CNN, "--input", "sample:0", "--rule", "lrp0", "--out",
                         tmp_path / "out", *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
