"""Export ONNX test fixtures with torch.onnx.export, and record torch's output and gradient beside each.

Run in the cross-check environment (scripts/setup_crosscheck.sh installs torch, onnx and
onnxscript)::

    .venv-xcheck/bin/python scripts/export_onnx_fixtures.py [tests/fixtures/onnx]

For every model NAME it writes ``NAME.onnx`` (weights inside the file) and ``NAME.npz``
(no objects: ``np.load(allow_pickle=False)`` reads it) holding the input batch ``x``
(float64), torch's output ``y`` on it, its logits ``z`` (``y`` before a final softmax; ``y``
itself without one), the explained ``target`` (the arg-max of ``z``) and torch's autograd
``grad`` of ``sum_n z[n, target[n]]`` with respect to ``x``.
``tests/test_onnx_fixtures.py`` checks ``lrp_ref.from_onnx`` against them without torch.

The models:

* ``mnist_cnn``: the shipped MNIST CNN (``lrp_ref.to_torch(load("weights/mnist_cnn.h5"))``),
  the TorchScript exporter (``dynamo=False``), opset 11, initializers kept as graph inputs;
* ``mnist_resnet``: the shipped MNIST ResNet, the dynamo exporter (the default), opset 20;
* ``options_torchscript`` / ``options_dynamo``: :class:`Options`, a small net that uses every
  option the importer maps (dilated, grouped and 'same' convolutions, max and average pooling
  with padding, batch norms not folded into a convolution, a residual sum, a concatenation,
  ``x.view(x.size(0), -1)``, dropout, a final softmax), with a dynamic batch;
* ``options_float32``: the same net in float32 (the exporters' usual precision).

float64 exports are checked to 1e-10, the float32 one to 1e-5 relative.  Every run gives the
same files: weights and inputs come from seeded generators.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lrp_ref  # noqa: E402


class Options(nn.Module):
    """A small net touching every operator option from_onnx maps (input (N, 2, 12, 12), 5 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_dilated = nn.Conv2d(2, 4, 3, padding=(2, 1), dilation=(2, 1))
        self.conv_grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False)
        self.conv_same = nn.Conv2d(4, 4, 4, padding="same")
        self.pool_max = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn2d = nn.BatchNorm2d(8)
        self.pool_avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.conv_strided = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.pool_global = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(6 * 2 * 2 + 6, 16)
        self.bn1d = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: Any) -> Any:
        return torch.softmax(self.logits(x), dim=1)

    def logits(self, x: Any) -> Any:
        """The output before the final softmax (what LRP explains)."""
        a = torch.relu(self.conv_dilated(x))
        b = torch.relu(self.conv_grouped(a))
        c = self.conv_same(b) + a  # a residual sum
        d = torch.cat([c, b], dim=1)  # a concatenation of channels
        e = self.bn2d(self.pool_max(d))  # a batch norm after a pool: not folded into a convolution
        f = torch.relu(self.conv_strided(self.pool_avg(e)))  # (N, 6, 2, 2)
        g = self.pool_global(f).flatten(1)  # (N, 6)
        h = torch.cat([f.view(f.size(0), -1), g], dim=1)
        h = self.drop(torch.relu(self.bn1d(self.fc1(h))))
        return self.fc2(h)


def options_model(dtype: Any = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    model = Options()
    gen = torch.Generator().manual_seed(1)
    for bn in (model.bn2d, model.bn1d):
        n = bn.num_features
        bn.weight.data = 0.5 + torch.rand(n, generator=gen)
        bn.bias.data = 0.2 * torch.randn(n, generator=gen)
        bn.running_mean.data = 0.2 * torch.randn(n, generator=gen)
        bn.running_var.data = 0.5 + torch.rand(n, generator=gen)
    return model.to(dtype).eval()


def shipped(name: str) -> nn.Module:
    return lrp_ref.to_torch(lrp_ref.load(ROOT / "weights" / f"{name}.h5")).eval()


def export(model: nn.Module, x: Any, path: Path, dynamo: bool, opset: int | None = None,
           dynamic_batch: bool = False, **kwargs: Any) -> None:
    """torch.onnx.export into one file (no external data unless ``external_data=True``), quietly."""
    options: dict[str, Any] = {"dynamo": dynamo, "input_names": ["x"], "output_names": ["y"], **kwargs}
    if opset is not None:
        options["opset_version"] = opset
    if dynamo:
        options.setdefault("external_data", False)
        if dynamic_batch:
            options["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    elif dynamic_batch:
        options["dynamic_axes"] = {"x": {0: "N"}, "y": {0: "N"}}
    # the exporters print progress and warn about their own internals (deprecations): not ours to fix
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **options)


def record(model: nn.Module, x: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """torch's output ``y``, logits ``z``, target and gradient of the target logits at ``x``, saved as ``path``."""
    dtype = next(model.parameters()).dtype
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    out = model(xt)
    z = model.logits(xt) if isinstance(model, Options) else out
    target = z.detach().numpy().argmax(axis=1)
    z[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
    assert xt.grad is not None
    data = {"x": x, "y": out.detach().numpy().astype(np.float64), "z": z.detach().numpy().astype(np.float64),
            "target": target.astype(np.int64), "grad": xt.grad.numpy().astype(np.float64)}
    np.savez(path, **data)
    return data


#: name -> (model factory, input shape, exporter options)
FIXTURES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], dict[str, Any]]] = {
    "mnist_cnn": (lambda: shipped("mnist_cnn"), (1, 28, 28),
                  {"dynamo": False, "opset": 11, "dynamic_batch": True, "keep_initializers_as_inputs": True}),
    "mnist_resnet": (lambda: shipped("mnist_resnet"), (1, 28, 28), {"dynamo": True}),
    "options_torchscript": (options_model, (2, 12, 12), {"dynamo": False, "opset": 13, "dynamic_batch": True}),
    "options_dynamo": (options_model, (2, 12, 12), {"dynamo": True, "dynamic_batch": True}),
    "options_float32": (lambda: options_model(torch.float32), (2, 12, 12), {"dynamo": True}),
}


def make(name: str, folder: Path) -> Path:
    factory, shape, options = FIXTURES[name]
    model = factory()
    rng = np.random.default_rng(sum(map(ord, name)))
    x = rng.uniform(0.0, 1.0, size=(3, *shape)) if name.startswith("mnist") else rng.normal(size=(3, *shape))
    dtype = next(model.parameters()).dtype
    path = folder / f"{name}.onnx"
    export(model, torch.tensor(x, dtype=dtype), path, **options)
    record(model, x, folder / f"{name}.npz")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "tests" / "fixtures" / "onnx"))
    parser.add_argument("--only", nargs="*", choices=sorted(FIXTURES), help="export only these")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIXTURES:
        path = make(name, folder)
        print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
