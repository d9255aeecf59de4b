"""from_keras against Keras 3 itself (torch backend, no TensorFlow): the exporter run live.

scripts/export_keras_fixtures.py builds and saves every model of its MODELS into a temporary
directory; each ``.keras`` and ``.h5`` imports with ``lrp_ref.from_keras`` and computes Keras's
output, and LRP-0 on it equals Keras's own gradient x input (torch autograd through the Keras
model).  Keras's torch backend multiplies in float32 whatever the floatx (its result_type maps
float64 to float32), so these comparisons are at 1e-5 relative; tests/test_keras.py checks LRP-0
against an exact float64 gradient at 1e-10 and tests/crosscheck_innvestigate/test_keras_files.py
checks tf.keras (float64) at 1e-10.  The committed fixtures are checked to be what the exporter
writes today.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import export_keras_fixtures  # noqa: E402
import h5py  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.graph import Graph  # noqa: E402
from lrp_ref.keras import from_keras, nchw_to_nhwc, nhwc_to_nchw  # noqa: E402
from lrp_ref.layers import LinearLayer  # noqa: E402
from lrp_ref.merge import Add  # noqa: E402

RTOL = 1e-5
NAMES = list(export_keras_fixtures.MODELS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    out = tmp_path_factory.mktemp("keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's notice that .h5 is a legacy format
        results = export_keras_fixtures.export(out)
    return out, results


def lrp0_rules(model: Graph) -> list[R.Rule | None]:
    return [R.LRP0() if isinstance(layer, (LinearLayer, Add)) else None for layer in model]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _input(name: str, x: np.ndarray) -> np.ndarray:
    return x if name == "channels_first" else nhwc_to_nchw(x)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", NAMES)
def test_imported_model_computes_keras_output_and_gradient(exported, name: str, fmt: str) -> None:
    out, results = exported
    r = results[name]
    model = from_keras(out / f"{name}.{fmt}")
    x = _input(name, r["x"])
    ours = model.forward(x)
    assert_allclose(softmax(ours) if r["softmax"] else ours, r["y"], rtol=0, atol=RTOL * np.abs(r["y"]).max())
    # Keras reading its own file computes the same as the model it saved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's own numpy 2 __array__ DeprecationWarning
        reloaded = keras.saving.load_model(out / f"{name}.{fmt}", compile=False)
        again = keras.ops.convert_to_numpy(reloaded(r["x"], training=False))
    assert_allclose(again, r["y"], rtol=0, atol=1e-12 * np.abs(r["y"]).max())
    e = lrp_ref.explain(model, x, lrp0_rules(model))
    keras_grad = r["grad"][np.arange(len(x)), e.target]
    keras_gx = r["x"] * keras_grad
    ours_gx = e.relevance if name == "channels_first" else nchw_to_nhwc(e.relevance)
    assert_allclose(ours_gx, keras_gx, rtol=0, atol=RTOL * np.abs(keras_gx).max())
    e.ledger.check_balance()


@pytest.mark.parametrize("name", NAMES)
def test_committed_fixtures_are_current(exported, name: str) -> None:
    """The exporter is seeded: today's Keras writes the numbers tests/fixtures/keras holds."""
    _, results = exported
    with h5py.File(ROOT / "tests" / "fixtures" / "keras" / "expected.h5", "r") as f:
        for key in ("x", "y", "grad"):
            stored = f[name][key][()]
            assert_allclose(results[name][key], stored, rtol=0, atol=1e-12 * max(1.0, np.abs(stored).max()))


def test_keras_applications_resnet50(tmp_path: Path) -> None:
    """keras.applications.ResNet50 (random weights and batch-norm statistics, 64 x 64): ZeroPadding2D stems,
    batch norms, residual sums, global pooling and a final softmax import as a Graph with Keras's logits."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
        rng = np.random.default_rng(0)
        for layer in net.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                c = layer.get_weights()[0].shape
                layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                                   rng.uniform(0.5, 2.0, c)])
        net.save(tmp_path / "resnet50.keras")
        net.layers[-1].activation = keras.activations.linear  # Keras's logits, for the comparison
        x = rng.uniform(0, 1, (2, 64, 64, 3))
        xt = torch.tensor(x, requires_grad=True)
        logits = net(xt, training=False)
        target = logits.detach().numpy().argmax(axis=1)
        grad = torch.autograd.grad(logits[np.arange(2), target].sum(), xt)[0].numpy()
        logits = logits.detach().numpy()
    model = from_keras(tmp_path / "resnet50.keras")
    assert isinstance(model, Graph) and "softmax" in model.metadata["import_notes"]
    assert_allclose(model.forward(nhwc_to_nchw(x)), logits, rtol=0, atol=RTOL * np.abs(logits).max())
    e = lrp_ref.explain(model, nhwc_to_nchw(x), lrp0_rules(model), target=target)
    assert_allclose(nchw_to_nhwc(e.relevance), x * grad, rtol=0, atol=1e-4 * np.abs(x * grad).max())
    e.ledger.check_balance()


def test_keras_applications_mobilenet_v2_is_refused_naming_the_layer(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4).save(tmp_path / "m.keras")
    with pytest.raises(lrp_ref.ModelFormatError, match=r"layer 'Conv1_relu' \(ReLU\): only the plain ReLU"):
        from_keras(tmp_path / "m.keras")


@pytest.mark.parametrize("name", ["residual.keras", "pools_same.h5", "channels_first.keras"])
def test_convert_checks_the_keras_file_against_keras(exported, name: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from lrp_ref.cli import main

    out, _ = exported
    code = main(["convert", str(out / name), str(tmp_path / "m.h5")])
    printed = capsys.readouterr().out
    check = next(line for line in printed.splitlines() if line.strip().startswith("lrp_ref vs Keras"))
    assert code == 0 and check.endswith(": ok"), printed
    assert "re-loaded vs the converted model: max |difference| 0 (identical): ok" in printed
