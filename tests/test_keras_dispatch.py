"""Keras files wherever lrp-ref takes a model: lrp_ref.load_any, --model of info/explain, and lrp-ref convert.

A ``.keras`` file and a ``.h5`` carrying Keras's root attribute ``model_config`` are read by
lrp_ref.from_keras; any other ``.h5`` is lrp_ref's own format (lrp_ref.formats).  Without Keras
installed, ``convert`` checks the written file only; tests/crosscheck/test_keras_live.py runs it
beside Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.cli import main
from lrp_ref.formats import format_of
from lrp_ref.keras import from_keras, nhwc_to_nchw

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "keras"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_load_any_reads_keras_files_and_still_lrp_ref_files() -> None:
    assert format_of(FIXTURES / "residual.keras").name == "Keras"
    assert format_of(FIXTURES / "residual.h5").name == "Keras HDF5"
    assert format_of(ROOT / "weights" / "mnist_cnn.h5").name == "lrp_ref HDF5"
    x = nhwc_to_nchw(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)))
    for name in ("residual.keras", "residual.h5", "tf/residual.h5"):
        assert_allclose(L.load_any(FIXTURES / name).forward(x), from_keras(FIXTURES / name).forward(x), rtol=0, atol=0)
    assert isinstance(L.load_any(ROOT / "weights" / "mnist_cnn.h5"), L.Sequential)


def test_info_and_explain_take_keras_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "info", "--model", FIXTURES / "residual.keras")
    assert code == 0, err
    assert "(3, 8, 8)" in out and "BatchNorm2d" in out
    x = nhwc_to_nchw(np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 3)))
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli(capsys, "explain", "--model", FIXTURES / "tf" / "residual.h5", "--input", tmp_path / "x.npy",
                         "--preprocessed", "--rule", "epsilon:epsilon=0.25", "--out", tmp_path / "ex")
    assert code == 0, err
    expected = L.explain(from_keras(FIXTURES / "tf" / "residual.h5"), x, R.Epsilon(0.25)).relevance
    assert_allclose(np.load(tmp_path / "ex" / "relevance.npy"), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["residual.keras", "mlp_bn.h5", "tf/flat_order.h5"])
def test_convert_writes_the_keras_model(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    out_path = tmp_path / "converted.h5"
    code, out, err = cli(capsys, "convert", FIXTURES / name, out_path)
    assert code == 0, err
    assert "(converted)" in out and f"{out_path} re-loaded vs the converted model: max |difference| 0" in out
    written, imported = L.load(out_path), from_keras(FIXTURES / name)
    x = np.random.default_rng(2).normal(size=(2, *imported.metadata["input_shape"]))
    assert_allclose(written.forward(x), imported.forward(x), rtol=0, atol=0)
    assert written.metadata["input_shape"] == imported.metadata["input_shape"]


def test_convert_refuses_a_broken_keras_file_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = (FIXTURES / "residual.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    code, _, err = cli(capsys, "convert", tmp_path / "cut.keras", tmp_path / "out.h5")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cut.keras" in err, err
    assert not (tmp_path / "out.h5").exists()
