"""from_onnx on files torch.onnx.export writes live: torchvision's ResNet-18 and VGG-11-BN, the fixtures.

Runs in the cross-check environment (torch, torchvision, onnx, onnxscript, onnxruntime):

* torchvision's ``resnet18`` and ``vgg11_bn`` (10 classes, seeded random weights and batch norm
  statistics, eval mode, as in test_torchvision.py) exported in float64 by the dynamo exporter
  (weights in an external data file) and by the TorchScript exporter: the imported model's
  forward equals torch's to 1e-10 of max|output|, and LRP-0 on every linear layer equals
  torch's gradient x input to 1e-10 (``lrp_ref.testing.assert_relevance_close``); the ledger
  balances.  ONNX Runtime has no float64 convolution on the CPU, so it is the reference for the
  float32 exports: the imported float32 file (computed in float64) equals ONNX Runtime's output
  to 1e-5 relative.
* ``lrp-ref convert`` of a torchvision state dict (``--arch resnet18``) and of a live export checks the
  forward against torch / ONNX Runtime and writes a model whose forward is torch's (1e-10); a pickled
  module instead of a state dict is refused (``torch.load(weights_only=True)``).
* scripts/export_onnx_fixtures.py re-exports every committed fixture: torch's output and gradient
  are the recorded ones (1e-12), and ONNX Runtime agrees with the committed float32 file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from tolerant_torchvision import import_torchvision  # noqa: E402

if import_torchvision() is None:
    pytest.skip("torchvision is not installed (scripts/setup_crosscheck.sh installs it)", allow_module_level=True)

from test_torchvision import MEAN, STD, TARGET, random_model  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.cli import main  # noqa: E402
from lrp_ref.layers import LinearLayer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import export_onnx_fixtures as fixtures  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "onnx"


def onnxruntime_forward(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def gradient_times_input(model: Any, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x).requires_grad_(True)
    out = model(xt)
    out[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
    return (xt * xt.grad).detach().numpy()


def check_lrp0(model: lrp_ref.Graph, x: np.ndarray, target: np.ndarray, expected: np.ndarray) -> None:
    rules = [R.LRP0() if isinstance(layer, LinearLayer) else None for layer in model]
    e = lrp_ref.explain(model, x, rules, target=target)
    lrp_ref.testing.assert_relevance_close(e.relevance, expected, rtol=1e-10, what="LRP-0 vs gradient x input")
    e.ledger.check_balance(1e-12)
    e.ledger.check_conservation()


#: the input batch per model: VGG at 224 x 224, where its AdaptiveAvgPool2d(7) meets 7 x 7 maps (at 64 x 64 it
#: up-samples 2 x 2 maps, which the dynamo exporter writes as gathers: see test_vgg_upsampling_is_refused_by_name)
SIZES = {"resnet18": (2, 3, 64, 64), "vgg11_bn": (1, 3, 224, 224)}


@pytest.fixture(scope="module", params=sorted(SIZES))
def torchvision_case(request: pytest.FixtureRequest) -> tuple[str, Any, np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, request.param)))
    x = (rng.uniform(0.0, 1.0, size=SIZES[request.param]) - MEAN) / STD
    return request.param, random_model(request.param), x


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_torchvision_float64(torchvision_case, dynamo: bool, tmp_path: Path) -> None:
    name, model, x = torchvision_case
    path = tmp_path / f"{name}.onnx"
    fixtures.export(model, torch.tensor(x), path, dynamo=dynamo, dynamic_batch=not dynamo,
                    **({"external_data": True} if dynamo else {}))
    imported = lrp_ref.from_onnx(path)
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(imported.forward(x), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    target = TARGET[: len(x)]
    check_lrp0(imported, x, target, gradient_times_input(model, x, target))


def test_torchvision_float32_against_onnxruntime(torchvision_case, tmp_path: Path) -> None:
    name, _, x = torchvision_case
    single = random_model(name).float()
    path = tmp_path / f"{name}32.onnx"
    x32 = x.astype(np.float32)
    fixtures.export(single, torch.tensor(x32), path, dynamo=True)
    reference = onnxruntime_forward(path, x32)
    ours = lrp_ref.from_onnx(path).forward(x32.astype(np.float64))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_vgg_upsampling_is_refused_by_name(tmp_path: Path) -> None:
    # AdaptiveAvgPool2d(7) on VGG's 2 x 2 maps of a 64 x 64 image: the dynamo exporter writes gathers
    path = tmp_path / "vgg_small.onnx"
    fixtures.export(random_model("vgg11_bn").float(), torch.zeros(1, 3, 64, 64), path, dynamo=True)
    with pytest.raises(lrp_ref.ModelFormatError, match=r"node '\w+' \(Transpose\): operator Transpose is not "):
        lrp_ref.from_onnx(path)


@pytest.mark.parametrize("name", sorted(fixtures.FIXTURES))
def test_fixtures_are_reproduced(name: str, tmp_path: Path) -> None:
    fixtures.make(name, tmp_path)
    with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as fresh, \
            np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as committed:
        for key in ("x", "y", "z", "grad"):
            np.testing.assert_allclose(fresh[key], committed[key], rtol=1e-12, atol=1e-14, err_msg=key)
    imported = lrp_ref.from_onnx(tmp_path / f"{name}.onnx")
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as committed:
        x, z = committed["x"], committed["z"]
    tol = 1e-5 if name.endswith("float32") else 1e-10
    np.testing.assert_allclose(imported.forward(x), z, rtol=0, atol=tol * np.abs(z).max())


def test_onnxruntime_agrees_with_the_float32_fixture() -> None:
    path = FIXTURES / "options_float32.onnx"
    with np.load(FIXTURES / "options_float32.npz", allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    reference = onnxruntime_forward(path, x.astype(np.float32))
    np.testing.assert_allclose(reference, y, rtol=1e-5, atol=1e-6)
    z = lrp_ref.from_onnx(path).forward(x.astype(np.float32).astype(np.float64))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(axis=1, keepdims=True), reference, rtol=1e-5, atol=1e-6)


def test_convert_a_torchvision_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = random_model("resnet18")
    torch.save(net.state_dict(), tmp_path / "resnet18.pt")
    out_path = tmp_path / "resnet18.h5"
    code = main(["convert", str(tmp_path / "resnet18.pt"), str(out_path), "--arch", "resnet18", "--input-shape",
                 "3,64,64"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "lrp_ref vs torch" in out and "(identical): ok" in out
    model = lrp_ref.load(out_path)
    assert model.metadata["input_shape"] == (3, 64, 64)
    x = (np.random.default_rng(5).uniform(size=(2, 3, 64, 64)) - MEAN) / STD
    with torch.no_grad():
        expected = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.forward(x), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    # a pickled module is not read: torch.load(weights_only=True) refuses to run its code
    torch.save(net, tmp_path / "module.pt")
    code = main(["convert", str(tmp_path / "module.pt"), str(tmp_path / "m.h5"), "--arch", "resnet18"])
    _, err = capsys.readouterr()
    assert code == 2 and "torch.load(weights_only=True) cannot read it" in err and len(err.strip().splitlines()) == 1
    code = main(["convert", str(tmp_path / "resnet18.pt"), str(tmp_path / "v.h5"), "--arch", "vgg11_bn"])
    _, err = capsys.readouterr()
    assert code == 2 and "does not fit torchvision's vgg11_bn" in err
    code = main(["convert", str(tmp_path / "resnet18.pt"), str(tmp_path / "v.h5"), "--arch", "resnet19"])
    _, err = capsys.readouterr()
    assert code == 2 and "not a torchvision architecture (did you mean resnet18" in err


def test_convert_a_live_export_against_onnxruntime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resnet18_32.onnx"
    fixtures.export(random_model("resnet18").float(), torch.zeros(2, 3, 64, 64), path, dynamo=True)
    code = main(["convert", str(path), str(tmp_path / "r.h5")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "lrp_ref vs onnxruntime" in out and "(float32)" in out
