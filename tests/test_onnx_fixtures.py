"""from_onnx on files written by torch.onnx.export (tests/fixtures/onnx, from scripts/export_onnx_fixtures.py).

Each ``NAME.onnx`` comes with ``NAME.npz``: the input ``x``, torch's output ``y``
and logits ``z`` on it, the ``target`` and torch's autograd gradient ``grad`` of
the target logits.  Without torch:

* the forward of ``from_onnx(NAME.onnx)`` equals torch's logits to 1e-10 of their
  largest magnitude (float64 exports), or to 1e-5 relative (the float32 export, which
  lrp_ref computes in float64 on the float32 weights: the difference is torch's float32
  rounding); a final softmax is dropped, and softmax of the forward equals torch's ``y``;
* LRP-0 on every linear layer equals torch's gradient x input to 1e-10 (float64 exports),
  and the ledger balances;
* the imported model survives ``lrp_ref.save`` / ``lrp_ref.load`` unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

onnx = pytest.importorskip("onnx")

from onnx_nets import check_lrp0  # noqa: E402

import lrp_ref as L  # noqa: E402

FOLDER = FIXTURES_DIR = Path(__file__).parent / "fixtures" / "onnx"
NAMES = sorted(p.stem for p in FOLDER.glob("*.onnx"))
#: what each file must import to (node count checks that nothing was skipped or duplicated)
KINDS = {"mnist_cnn": L.Sequential, "mnist_resnet": L.Graph, "options_torchscript": L.Graph,
         "options_dynamo": L.Graph, "options_float32": L.Graph}


def test_every_fixture_is_known():
    assert NAMES == sorted(KINDS)


def fixture(name: str) -> tuple[L.Graph, dict[str, np.ndarray]]:
    with np.load(FOLDER / f"{name}.npz", allow_pickle=False) as data:
        return L.from_onnx(FOLDER / f"{name}.onnx"), dict(data)


@pytest.mark.parametrize("name", NAMES)
def test_forward_equals_torch(name):
    model, data = fixture(name)
    assert isinstance(model, KINDS[name])
    z = model.forward(data["x"])
    if name.endswith("float32"):
        assert_allclose(z, data["z"], rtol=1e-5, atol=1e-5 * np.abs(data["z"]).max())
    else:
        assert_allclose(z, data["z"], rtol=0, atol=1e-10 * np.abs(data["z"]).max())
    if name.startswith("options"):
        assert "softmax" in model.metadata["import_notes"][0]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        assert_allclose(p / p.sum(axis=1, keepdims=True), data["y"], rtol=1e-5 if name.endswith("32") else 1e-10)


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("float32")])
def test_lrp0_equals_torch_gradient_times_input(name):
    model, data = fixture(name)
    e = check_lrp0(model, data["x"], grad=data["grad"])
    np.testing.assert_array_equal(e.target, data["target"])


def test_the_shipped_models_import_to_their_own_layers():
    # the ONNX export of weights/mnist_cnn.h5 imports to the same layers with the same weights
    cnn, _ = fixture("mnist_cnn")
    proto = onnx.load(FIXTURES_DIR / "mnist_cnn.onnx")
    assert len(proto.graph.input) == 9 and len(proto.graph.initializer) == 8  # initializers listed as inputs
    shipped = L.load(Path(__file__).parents[1] / "weights" / "mnist_cnn.h5")
    assert [layer.describe() for layer in cnn] == [layer.describe() for layer in shipped]
    for ours, theirs in zip(cnn, shipped):
        if hasattr(theirs, "weight"):
            np.testing.assert_array_equal(ours.weight, theirs.weight)
    # the dynamo exporter folds each batch norm into the convolution before it: 31 nodes become 22
    resnet, _ = fixture("mnist_resnet")
    assert len(resnet) == 22 and sum(isinstance(layer, L.Add) for layer in resnet) == 3


@pytest.mark.parametrize("name", ["mnist_resnet", "options_dynamo"])
def test_save_and_load_keep_the_imported_model(name, tmp_path):
    model, data = fixture(name)
    notes = model.metadata.get("import_notes")
    path = tmp_path / f"{name}.h5"
    L.save(model, path, {"import_notes": "; ".join(notes)} if notes else None)
    again = L.load(path)
    assert_allclose(again.forward(data["x"]), model.forward(data["x"]), rtol=0, atol=0)
    assert again.metadata["input_shape"] == model.metadata["input_shape"]
