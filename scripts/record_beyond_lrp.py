#!/usr/bin/env python3
"""Run two peers of the methods beyond LRP on the shipped CNN, compare them with lrp_ref, record their numbers.

    PY=.venv-xcheck/bin/python
    $PY -m pip install --no-deps torchray==1.0.0.2          # once, beside torch (scripts/setup_crosscheck.sh)
    $PY scripts/record_beyond_lrp.py RAP_DIR           # measure, (re)write tests/golden/beyond_lrp/mnist_cnn.h5
    $PY scripts/record_beyond_lrp.py RAP_DIR --check   # measure, compare with what is recorded, write nothing

The peers, run unmodified and only as behavioural references (none of their code is copied here):

* **Excitation Backprop**: TorchRay 1.0.0.2 (Facebook Research, PyPI ``torchray``), whose
  ``ExcitationBackpropContext`` patches ``conv2d``/``linear``/average pooling with Zhang et al.'s
  rule (a replication of the authors' Caffe code).  MWP: the input gradient of the target under
  the context.  c-MWP: TorchRay's procedure (its ``contrastive_excitation_backprop``) written out
  so that the map at the input is not post-processed: a pass with the classifier's weights
  negated gives the dual unit's excitation at the contrast layer (the ReLU after the first Dense
  layer), and a second pass subtracts it there.  TorchRay's backward asks for gradients of the
  bias, which recent torch refuses; the parameters are frozen first (TorchRay's own contrastive
  function does the same).
* **RAP**: the authors' released code, RAP_DIR being a git repository of
  wjNam/Relative_Attributing_Propagation (checkout or bare mirror; it is not on PyPI).  Its
  ``modules/layers.py`` at HEAD is extracted to a temporary directory with ``git show`` and
  imported from there; the start is the one-hot target (its "first propagation").

Both peers route a max-pooling window's relevance to the first arg-max (PyTorch's gradient),
so lrp_ref is run with ``WinnerTakesAll(ties="first")`` on max pooling; MNIST has exact ties in
its saturated strokes, where lrp_ref's default (ties split evenly) differs.

For one digit of each class (samples 0, 3, ..., 27 of weights/mnist_samples.h5) the script
prints max|peer - lrp_ref| / max|lrp_ref| per method, fails (exit 1) above 1e-12, and writes
tests/golden/beyond_lrp/mnist_cnn.h5: datasets ``samples``, ``target``, ``mwp``, ``cmwp``, ``rap``
(N, 1, 28, 28), attributes naming the peers and versions.  tests/test_excitation.py and
tests/test_rap.py check lrp_ref against it without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "beyond_lrp" / "mnist_cnn.h5"
SAMPLES = list(range(0, 30, 3))
TOLERANCE = 1e-12


def _authors_layers(rap_dir: Path, tmp: Path) -> tuple[Any, str]:
    commit = subprocess.run(["git", "-C", str(rap_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    source = subprocess.run(["git", "-C", str(rap_dir), "show", "HEAD:modules/layers.py"], capture_output=True,
                            text=True, check=True).stdout
    path = tmp / "rap_layers.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("rap_layers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, commit


def _peers_net(nn: Any, torch: Any, model: Any, conv_cls: Any, linear_cls: Any, relu: Any, pool: Any) -> list[Any]:
    """The shipped CNN's layers as torch modules of the given classes, float64, weights copied."""
    def conv(layer: Any) -> Any:
        c = conv_cls(layer.weight.shape[1], layer.weight.shape[0], tuple(layer.weight.shape[2:]))
        c.weight.data, c.bias.data = torch.tensor(layer.weight), torch.tensor(layer.bias)
        return c

    def linear(layer: Any) -> Any:
        c = linear_cls(layer.weight.shape[1], layer.weight.shape[0])
        c.weight.data, c.bias.data = torch.tensor(layer.weight), torch.tensor(layer.bias)
        return c

    return [conv(model[0]), relu(), pool(2), conv(model[3]), relu(), pool(2), linear(model[7]), relu(),
            linear(model[9])]


def _contrast_hook(dual: dict[str, Any]) -> Any:
    """A forward hook whose tensor hook keeps the first pass's gradient and subtracts it in the second."""
    def hook(module: Any, inputs: Any, output: Any) -> None:
        def at_contrast(grad: Any) -> Any:
            if "grad" not in dual:
                dual["grad"] = grad.clone()  # first pass (classifier negated): the dual unit's excitation
                return None
            return grad - dual["grad"]  # second pass: the target's excitation minus the dual's
        output.register_hook(at_contrast)
    return hook


def measure(rap_dir: Path) -> dict[str, Any]:
    import torch
    import torch.nn as nn

    sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))
    from tolerant_torchvision import import_torchvision  # TorchRay imports torchvision's ResNet classes

    import_torchvision()
    try:
        import torchray
        from torchray.attribution.excitation_backprop import ExcitationBackpropContext
    except ImportError as exc:
        raise SystemExit(f"TorchRay is missing ({exc}): pip install --no-deps torchray==1.0.0.2") from None
    import lrp_ref

    torch.set_default_dtype(torch.float64)
    model = lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5")
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        images = np.asarray(f["images"][SAMPLES], dtype=np.float64)
    x_all = images[:, None] * model.metadata["input_scale"] + model.metadata["input_offset"]

    # TorchRay: a plain torch network
    layers = _peers_net(nn, torch, model, nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d)
    net = nn.Sequential(*layers[:6], nn.Flatten(), *layers[6:])
    for p in net.parameters():
        p.requires_grad_(False)
    contrast_layer, classifier = net[8], net[9]  # the ReLU after the first Dense layer; the output layer
    targets, mwp, cmwp = [], [], []
    for x in x_all:
        xt = torch.tensor(x[None], requires_grad=True)
        with ExcitationBackpropContext():
            out = net(xt)
            t = int(out.argmax())
            start = torch.zeros_like(out)
            start[0, t] = 1.0
            out.backward(start)
        targets.append(t)
        mwp.append(xt.grad.detach().numpy()[0])
        handle = contrast_layer.register_forward_hook(_contrast_hook({}))
        with ExcitationBackpropContext():
            classifier.weight.data.neg_()
            try:
                net(torch.tensor(x[None], requires_grad=True)).backward(start)
            finally:
                classifier.weight.data.neg_()
            xt = torch.tensor(x[None], requires_grad=True)
            net(xt).backward(start)
        handle.remove()
        cmwp.append(xt.grad.detach().numpy()[0])

    # the RAP authors' code: their module classes, their RAP_relprop
    with tempfile.TemporaryDirectory() as tmp:
        A, commit = _authors_layers(rap_dir, Path(tmp))
        layers = _peers_net(nn, torch, model, A.Conv2d, A.Linear, A.ReLU, A.MaxPool2d)
        features, head = A.Sequential(*layers[:6]), A.Sequential(*layers[6:])
        rap = []
        for x, t in zip(x_all, targets):
            xt = torch.tensor(x[None], requires_grad=True)
            h = features(xt)
            out = head(h.reshape(1, -1))
            assert int(out.argmax()) == t
            start = torch.zeros_like(out)
            start[0, t] = 1.0
            rap.append(features.RAP_relprop(head.RAP_relprop(start).reshape(h.shape)).detach().numpy()[0])
    return {"samples": np.array(SAMPLES), "target": np.array(targets), "mwp": np.array(mwp), "cmwp": np.array(cmwp),
            "rap": np.array(rap), "x": x_all, "torchray": torchray.__version__ if hasattr(torchray, "__version__")
            else "1.0.0.2", "rap_commit": commit, "torch": torch.__version__}


def lrp_ref_maps(x: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """lrp_ref's maps with max-pool ties to the first arg-max (the peers' routing), from probability 1."""
    import lrp_ref
    from lrp_ref import composites
    from lrp_ref.layers import MaxPool2d
    from lrp_ref.rules import WinnerTakesAll

    model = lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5")
    start = np.zeros((len(x), 10))
    start[np.arange(len(x)), targets] = 1.0

    def run(composite: Any, **kwargs: Any) -> np.ndarray:
        rules = [WinnerTakesAll(ties="first") if isinstance(layer, MaxPool2d) else rule
                 for layer, rule in zip(model, composite.rules_for(model))]
        return lrp_ref.explain(model, x, rules, **kwargs).relevance

    return {"mwp": run(composites.excitation_backprop(), output_relevance=start),
            "cmwp": run(composites.excitation_backprop(contrastive=True), output_relevance=start),
            "rap": run(composites.rap(), target=targets)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rap_dir", type=Path, help="git repository of wjNam/Relative_Attributing_Propagation")
    parser.add_argument("--check", action="store_true", help="compare with the recorded file, write nothing")
    args = parser.parse_args()
    peers = measure(args.rap_dir)
    mine = lrp_ref_maps(peers["x"], peers["target"])
    failed = False
    for name in ("mwp", "cmwp", "rap"):
        worst = max(float(np.abs(p - m).max() / np.abs(m).max()) for p, m in zip(peers[name], mine[name]))
        verdict = "ok" if worst <= TOLERANCE else "FAILED"
        failed |= worst > TOLERANCE
        print(f"{name:<5} {len(peers[name])} digits: max|peer - lrp_ref| / max|lrp_ref| = {worst:.2e}  {verdict}")
    if args.check:
        with h5py.File(GOLDEN, "r") as f:
            for name in ("mwp", "cmwp", "rap"):
                recorded = np.asarray(f[name])
                gap = float(np.abs(recorded - peers[name]).max() / np.abs(recorded).max())
                print(f"{name:<5} recorded vs now: {gap:.2e}")
                failed |= gap > TOLERANCE
    else:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(GOLDEN, "w") as f:
            for name in ("samples", "target", "mwp", "cmwp", "rap"):
                f.create_dataset(name, data=peers[name], track_times=False)
            f.attrs["mwp"] = f"TorchRay {peers['torchray']} ExcitationBackpropContext, torch {peers['torch']}"
            f.attrs["cmwp"] = ("TorchRay's contrastive procedure, contrast subtracted at the ReLU after the first "
                               "Dense layer")
            f.attrs["rap"] = f"wjNam/Relative_Attributing_Propagation modules/layers.py at {peers['rap_commit']}"
            f.attrs["model"] = "weights/mnist_cnn.h5; max-pool ties to the first arg-max"
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
