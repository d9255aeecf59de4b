"""lrp-ref convert, and --model accepting ONNX files in info, explain and compare (lrp_ref.formats)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytest.importorskip("onnx")

from onnx_nets import model, node

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "onnx"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, code: int) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrp-ref: error: "), err
    return lines[0]


@pytest.mark.parametrize("name", ["mnist_resnet", "options_dynamo", "options_float32"])
def test_convert_onnx_writes_the_model_and_checks_its_forward(capsys, tmp_path, name):
    out_path = tmp_path / f"{name}.h5"
    code, out, err = cli(capsys, "convert", FIXTURES / f"{name}.onnx", out_path)
    assert code == 0, err
    assert "(converted)" in out and "shapes at the layer boundaries:" in out
    # the source check: onnxruntime where installed and able, else onnx's reference evaluator
    check = next(line for line in out.splitlines() if line.strip().startswith("lrp_ref vs "))
    assert check.endswith(": ok") and ("onnxruntime" in check or "ReferenceEvaluator" in check)
    assert f"{out_path} re-loaded vs the converted model: max |difference| 0 (identical): ok" in out
    assert out.strip().endswith(f"wrote {out_path}")
    # the written model computes torch's logits
    written = L.load(out_path)
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        x, z = data["x"], data["z"]
    tol = 1e-5 if name.endswith("float32") else 1e-10
    assert_allclose(written.forward(x), z, rtol=0, atol=tol * np.abs(z).max())
    assert written.metadata["input_shape"] == L.from_onnx(FIXTURES / f"{name}.onnx").metadata["input_shape"]
    if name.startswith("options"):
        assert "softmax" in written.metadata["import_notes"]


def test_convert_with_preprocessing_explains_like_the_shipped_model(capsys, tmp_path):
    # the ONNX export of weights/mnist_cnn.h5, given the shipped model's preprocessing, explains a digit as it does
    out_path = tmp_path / "cnn.h5"
    code, _, err = cli(capsys, "convert", FIXTURES / "mnist_cnn.onnx", out_path,
                       "--set", "input_scale=0.00392156862745098", "--set", "input_offset=0",
                       "--set", "input_low=0", "--set", "input_high=1",
                       "--set", "class_names=" + ",".join(map(str, range(10))), "--set", "dataset=MNIST")
    assert code == 0, err
    converted = L.load(out_path)
    assert converted.metadata["class_names"][3] == "3" and converted.metadata["dataset"] == "MNIST"
    for path, folder in ((out_path, "a"), (ROOT / "weights" / "mnist_cnn.h5", "b")):
        code, _, err = cli(capsys, "explain", "--model", path, "--input", "sample:3", "--samples", SAMPLES,
                           "--rule", "epsilon_gamma_box", "--out", tmp_path / folder)
        assert code == 0, err
    assert_allclose(np.load(tmp_path / "a" / "relevance.npy"), np.load(tmp_path / "b" / "relevance.npy"),
                    rtol=1e-10, atol=1e-12)
    code, _, err = cli(capsys, "convert", FIXTURES / "mnist_cnn.onnx", tmp_path / "c.h5", "--set", "input_scale=2")
    assert "'input_scale' and 'input_offset' go together" in one_line_error(err, code)
    assert not (tmp_path / "c.h5").exists()


def test_convert_float32_and_overwrite(capsys, tmp_path):
    out_path = tmp_path / "cnn.h5"
    assert cli(capsys, "convert", FIXTURES / "mnist_cnn.onnx", out_path, "--dtype", "float32")[0] == 0
    assert L.load(out_path).dtype == np.float32
    code, _, err = cli(capsys, "convert", FIXTURES / "mnist_cnn.onnx", out_path)
    assert "exists (give --force to overwrite it)" in one_line_error(err, code)
    assert cli(capsys, "convert", FIXTURES / "mnist_cnn.onnx", out_path, "--force")[0] == 0
    assert L.load(out_path).dtype == np.float64


def test_convert_refusals_are_one_line(capsys, tmp_path):
    cases = [
        ((tmp_path / "missing.onnx", tmp_path / "a.h5"), "IN "),
        ((FIXTURES / "mnist_cnn.onnx", tmp_path / "a.onnx"), "lrp_ref writes HDF5; give a name ending in .h5"),
        ((FIXTURES / "mnist_cnn.onnx", tmp_path / "a.h5", "--arch", "resnet18"), "only for a PyTorch state dict"),
        ((ROOT / "weights" / "mnist_cnn.h5", tmp_path / "a.h5", "--input-shape", "1,28,28"),
         "only for ONNX files and state dicts"),
        ((tmp_path / "weights.txt", tmp_path / "a.h5"), "no model format has the suffix '.txt'"),
    ]
    (tmp_path / "weights.txt").write_text("1 2 3")
    for args, match in cases:
        code, _, err = cli(capsys, "convert", *args)
        assert match in one_line_error(err, code), err
    unsupported = model([node("Gemm", ["x", "W"], ["h"], transB=1), node("Tanh", ["h"], ["y"], name="squash")],
                        {"W": np.ones((3, 4))}, (4,))
    (tmp_path / "tanh.onnx").write_bytes(unsupported.SerializeToString())
    code, _, err = cli(capsys, "convert", tmp_path / "tanh.onnx", tmp_path / "t.h5")
    assert "node 'squash' (Tanh): operator Tanh is not supported; supported: Add," in one_line_error(err, code)
    assert not (tmp_path / "t.h5").exists()


def test_a_state_dict_needs_arch_and_torch(capsys, tmp_path):
    state = tmp_path / "weights.pt"
    state.write_bytes(b"not read before the checks")
    code, _, err = cli(capsys, "convert", state, tmp_path / "a.h5")
    assert "give --arch NAME, the torchvision architecture" in one_line_error(err, code)
    if importlib.util.find_spec("torch") is None:
        code, _, err = cli(capsys, "convert", state, tmp_path / "a.h5", "--arch", "resnet18")
        assert "needs torch and torchvision" in one_line_error(err, code)


def test_info_explain_and_compare_take_onnx_files(capsys, tmp_path):
    onnx_file = FIXTURES / "mnist_resnet.onnx"
    code, out, err = cli(capsys, "info", "--model", onnx_file)
    assert code == 0, err
    assert "Graph (22 nodes" in out and "(1, 28, 28)" in out and "opset 20" in out
    with np.load(FIXTURES / "mnist_resnet.npz", allow_pickle=False) as data:
        x = data["x"][:1]
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli(capsys, "explain", "--model", onnx_file, "--input", tmp_path / "x.npy", "--preprocessed",
                         "--rule", "epsilon:epsilon=0.25", "--out", tmp_path / "ex")
    assert code == 0, err
    expected = L.explain(L.from_onnx(onnx_file), x, R.Epsilon(0.25)).relevance
    assert_allclose(np.load(tmp_path / "ex" / "relevance.npy"), expected, rtol=1e-12, atol=0)
    np.save(tmp_path / "candidate.npy", expected)
    code, out, err = cli(capsys, "compare", "--model", onnx_file, "--input", tmp_path / "x.npy", "--preprocessed",
                         "--rule", "epsilon:epsilon=0.25", "--candidate", tmp_path / "candidate.npy")
    assert code == 0, err + out


def test_load_any_dispatches_by_suffix(tmp_path):
    from lrp_ref.formats import FORMATS, format_of

    assert format_of("m.onnx").name == "ONNX" and format_of("m.H5").name == "lrp_ref HDF5"
    assert [f.name for f in FORMATS][-1] == "lrp_ref HDF5"
    cnn = L.load_any(ROOT / "weights" / "mnist_cnn.h5")
    assert isinstance(cnn, L.Sequential) and cnn.metadata["input_shape"] == (1, 28, 28)
    assert len(L.load_any(FIXTURES / "mnist_cnn.onnx")) == len(cnn)
    with pytest.raises(L.ModelFormatError, match=r"no model format has the suffix '\.bin'; known: \.onnx \(ONNX\)"):
        (tmp_path / "m.bin").write_bytes(b"")
        L.load_any(tmp_path / "m.bin")
    with pytest.raises(FileNotFoundError):
        L.load_any(tmp_path / "missing.onnx")


def test_import_lrp_ref_does_not_import_onnx():
    import subprocess
    import sys

    code = "import sys, lrp_ref; lrp_ref.from_onnx; assert 'onnx' not in sys.modules, 'onnx imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
