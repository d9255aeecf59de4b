"""Deterministically train the three small MNIST reference models used by ``lrp_ref``.

Trains, on CPU with PyTorch, in a fixed and reproducible way:

* ``cnn``: Conv2d(1,16,5) -> ReLU -> MaxPool2d(2) -> Conv2d(16,32,5) -> ReLU
  -> MaxPool2d(2) -> Flatten -> Linear(512,100) -> ReLU -> Linear(100,10)
* ``mlp``: Flatten -> Linear(784,300) -> ReLU -> Linear(300,100) -> ReLU
  -> Linear(100,10)
* ``resnet``: a small residual network (a graph, not a chain): stem
  Conv2d(1,16,3) -> BatchNorm2d -> ReLU at 28x28; three BasicBlocks, 16 -> 16
  and 16 -> 32 at stride 2 with a 1x1 Conv2d + BatchNorm2d projection shortcut
  (28x28 -> 14x14 -> 7x7), then 32 -> 32 with an identity shortcut, each
  ``relu(body + shortcut)``; AdaptiveAvgPool2d(1) -> flatten -> Linear(32,10).
  It is exported with ``lrp_ref.from_torch`` as an ``lrp_ref.Graph`` whose
  batch norms stay layers (``lrp_ref.canonize`` merges them); its file needs
  HDF5 schema 2.

and writes, per model, ``<out>/mnist_<name>.h5`` in the lrp_ref HDF5 model
format (``lrp_ref.save``; float64, PyTorch layout) with its metadata: input
shape, class names, the preprocessing (model input = raw * input_scale +
input_offset, raw being the uint8 pixel value 0..255), the input bounds for
zB, and the provenance (data set, licence, seed, test accuracy of the shipped
float64 model on the 10,000 test images).

It also writes ``--samples`` (HDF5): the first 3 test images of every class in
test-set order, datasets ``images`` (uint8, (30, 28, 28)), ``labels`` (int64)
and ``indices`` (int64, positions in the test set).

Run with ``make weights`` (which fetches the data and installs PyTorch into its
own environment; PyTorch is needed here only, never by ``lrp_ref`` itself;
``make weights MODELS=resnet`` retrains the ResNet alone), or::

    python scripts/train_mnist.py --data DIR_WITH_IDX_FILES --out weights [--models resnet]

``--data`` defaults to the environment variable ``MNIST_DIR``; the directory
must hold the four original idx files (``train-images-idx3-ubyte``, ...;
``.gz``-compressed files and the ``train-images.idx3-ubyte`` spelling are also
accepted).  Results are bit-identical between runs on the same machine, the
same thread count and the same PyTorch build; they are not guaranteed to be
identical across different CPUs or library versions.

Data licence: the MNIST database is by Yann LeCun, Corinna Cortes and
Christopher J.C. Burges and is available under the Creative Commons
Attribution-Share Alike 3.0 licence (CC BY-SA 3.0).
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DATASET = "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), training set 60,000 / test set 10,000 images"
LICENSE = "CC BY-SA 3.0"
INPUT_SCALE: float = 1.0 / 255.0
INPUT_OFFSET: float = 0.0
NUM_THREADS: int = 2

_IDX_MAGIC = {2049: 1, 2051: 3}  # magic number -> number of dimensions


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class MnistData:
    """Raw MNIST arrays: images uint8 (N, 28, 28), labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_idx(path: Path) -> np.ndarray:
    """Read an idx1/idx3 ubyte file (optionally gzip-compressed) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in _IDX_MAGIC:
        raise ValueError(f"{path}: not an idx ubyte file (magic {magic})")
    ndim = _IDX_MAGIC[magic]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape}, got {data.size} bytes of data")
    return data.reshape(shape).copy()


def _find_idx(data_dir: Path, stem: str, kind: str) -> Path:
    """Locate e.g. ``train-images-idx3-ubyte`` under its usual spellings."""
    for name in (f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"):
        for suffix in ("", ".gz"):
            candidate = data_dir / (name + suffix)
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no {stem}-{kind}-ubyte[.gz] in {data_dir}")


def load_mnist(data_dir: Path) -> MnistData:
    """Load the four original MNIST idx files from ``data_dir``."""
    data = MnistData(
        train_images=read_idx(_find_idx(data_dir, "train-images", "idx3")),
        train_labels=read_idx(_find_idx(data_dir, "train-labels", "idx1")).astype(np.int64),
        test_images=read_idx(_find_idx(data_dir, "t10k-images", "idx3")),
        test_labels=read_idx(_find_idx(data_dir, "t10k-labels", "idx1")).astype(np.int64),
    )
    assert data.train_images.shape == (60000, 28, 28), data.train_images.shape
    assert data.test_images.shape == (10000, 28, 28), data.test_images.shape
    assert data.train_labels.shape == (60000,) and data.test_labels.shape == (10000,)
    return data


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) = raw * INPUT_SCALE + INPUT_OFFSET."""
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    return x * INPUT_SCALE + INPUT_OFFSET


def select_samples(labels: np.ndarray, per_class: int = 3) -> np.ndarray:
    """Positions of the first ``per_class`` examples of each class, class-major order."""
    idx = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    return np.concatenate(idx).astype(np.int64)


def write_samples(path: Path, data: MnistData, per_class: int = 3) -> None:
    """Write real test digits (raw uint8), their labels and test-set positions to an HDF5 file."""
    import h5py

    indices = select_samples(data.test_labels, per_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=data.test_images[indices].astype(np.uint8))
        f.create_dataset("labels", data=data.test_labels[indices].astype(np.int64))
        f.create_dataset("indices", data=indices)
        f.attrs["description"] = f"the first {per_class} MNIST test images of every class, in test-set order"
        f.attrs["dataset"] = DATASET
        f.attrs["dataset_license"] = LICENSE


# ------------------------------------------------------------------------- models


def build_cnn() -> nn.Sequential:
    """Classic LRP MNIST CNN (28x28 -> 24 -> 12 -> 8 -> 4; 32*4*4 = 512 features)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def build_mlp() -> nn.Sequential:
    """Fully connected 784-300-100-10 ReLU network."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or, where the block changes the stride or the
    channel count, a 1x1 Conv2d + BatchNorm2d projection (``downsample``).
    The convolutions have no bias: the batch norm after each provides it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(body + shortcut)


class ResNet(nn.Module):
    """Small ResNet for 28x28 digits: stem, three basic blocks (28x28 -> 14x14 -> 7x7 -> 7x7), global pooling, Linear.

    Every convolution pads by 1 (3x3) or 0 (1x1), so each stride-2 block halves
    the image (28 -> 14 -> 7).  Adam at a higher learning rate than the chains
    (batch norm tolerates it) with a faster decay reaches 99.4% in 8 epochs.
    """

    def __init__(self, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width, stride=2)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 2 * width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet() -> nn.Module:
    """The ResNet above with widths 16, 16, 32, 32 (38,554 parameters)."""
    return ResNet(width=16)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe: Adam, per-epoch exponential learning-rate decay."""

    epochs: int
    lr: float = 1e-3
    lr_decay: float = 0.85
    batch_size: int = 128
    seed: int = 0


MODELS: dict[str, tuple[Callable[[], nn.Module], TrainConfig]] = {
    "cnn": (build_cnn, TrainConfig(epochs=15)),
    "mlp": (build_mlp, TrainConfig(epochs=20)),
    "resnet": (build_resnet, TrainConfig(epochs=8, lr=3e-3, lr_decay=0.7)),
}


# ----------------------------------------------------------------------- training


def set_determinism(seed: int) -> None:
    """Seed PyTorch's RNG and force deterministic kernels on a fixed thread count.

    Python's and NumPy's global RNGs are not used anywhere in this script.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(NUM_THREADS)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on (x, y)."""
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch):
        logits = model(x[start : start + batch])
        correct += int((logits.argmax(dim=1) == y[start : start + batch]).sum())
    return correct / x.shape[0]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
) -> None:
    """Train ``model`` in place with Adam and cross-entropy, shuffling with a seeded generator."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.detach().item() * idx.shape[0]
        log(f"  epoch {epoch + 1}/{cfg.epochs}  lr {sched.get_last_lr()[0]:.2e}  loss {total / n:.4f}")
        sched.step()


# ------------------------------------------------------------------------- export


def to_lrp_ref(model: nn.Sequential) -> Any:
    """The same network as an ``lrp_ref.Sequential`` (float64; parameters in PyTorch layout)."""
    import lrp_ref

    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float64)

    layers: list[Any] = []
    for m in model:
        if isinstance(m, nn.Conv2d):
            layers.append(lrp_ref.Conv2d(array(m.weight), array(m.bias), stride=m.stride, padding=m.padding))
        elif isinstance(m, nn.Linear):
            layers.append(lrp_ref.Dense(array(m.weight), array(m.bias)))
        elif isinstance(m, nn.ReLU):
            layers.append(lrp_ref.ReLU())
        elif isinstance(m, nn.MaxPool2d):
            layers.append(lrp_ref.MaxPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.Flatten):
            layers.append(lrp_ref.Flatten())
        else:
            raise TypeError(f"no lrp_ref layer for {m}")
    return lrp_ref.Sequential(layers)


def shipped_model(model: nn.Module, data: MnistData, *, seed: int) -> tuple[Any, float]:
    """The float64 lrp_ref model of a trained network, with its metadata, and its test accuracy.

    An ``nn.Sequential`` (the CNN and the MLP) becomes an ``lrp_ref.Sequential``
    (:func:`to_lrp_ref`); any other module (the ResNet) is traced by
    ``lrp_ref.from_torch`` into an ``lrp_ref.Graph`` in inference mode, its
    batch norms kept as layers.  The accuracy is that of this float64 lrp_ref
    model on the 10,000 MNIST test images, not of the float32 PyTorch model it
    came from, and is recorded in the metadata.
    """
    import lrp_ref

    net = to_lrp_ref(model) if isinstance(model, nn.Sequential) else lrp_ref.from_torch(model.eval())
    x_test = data.test_images.astype(np.float64)[:, None] * INPUT_SCALE + INPUT_OFFSET
    predictions = np.concatenate([net.forward(x_test[i : i + 500]).argmax(axis=1) for i in range(0, len(x_test), 500)])
    accuracy = float(np.mean(predictions == data.test_labels))
    metadata = {
        "input_shape": (1, 28, 28),
        "class_names": [str(c) for c in range(10)],
        "input_scale": INPUT_SCALE,
        "input_offset": INPUT_OFFSET,
        "input_low": 0.0 * INPUT_SCALE + INPUT_OFFSET,
        "input_high": 255.0 * INPUT_SCALE + INPUT_OFFSET,
        "dataset": DATASET,
        "dataset_license": LICENSE,
        "training_script": "scripts/train_mnist.py",
        "seed": seed,
        "test_accuracy": accuracy,
        "training_framework": f"torch {torch.__version__} (CPU, float32, {NUM_THREADS} threads, deterministic)",
    }
    if isinstance(net, lrp_ref.Sequential):
        return lrp_ref.Sequential(net.layers, metadata), accuracy
    return lrp_ref.Graph(net.nodes, {**net.metadata, **metadata}), accuracy


def export_model(path: Path, model: nn.Module, data: MnistData, *, seed: int) -> float:
    """Write a trained model as an lrp_ref HDF5 file (:func:`shipped_model`); return its float64 test accuracy.

    A graph (the ResNet) needs HDF5 schema 2.
    """
    import lrp_ref

    net, accuracy = shipped_model(model, data, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lrp_ref.save(net, path)
    return accuracy


# ---------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("MNIST_DIR"),
        help="directory with the MNIST idx files (default: $MNIST_DIR)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory for mnist_<model>.h5")
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="path of the sample-digit file (default: <out>/mnist_samples.h5)",
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the per-model epoch count")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("--data not given and MNIST_DIR not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_mnist(args.data)
    samples = args.samples or args.out / "mnist_samples.h5"
    write_samples(samples, data)
    print(f"wrote {samples}")

    x_train, y_train = preprocess(data.train_images), torch.from_numpy(data.train_labels)
    x_test, y_test = preprocess(data.test_images), torch.from_numpy(data.test_labels)

    for name in args.models:
        build, cfg = MODELS[name]
        cfg = TrainConfig(
            epochs=args.epochs if args.epochs is not None else cfg.epochs,
            lr=cfg.lr,
            lr_decay=cfg.lr_decay,
            batch_size=cfg.batch_size,
            seed=args.seed,
        )
        set_determinism(cfg.seed)
        model = build()
        print(f"training {name}: {cfg}  (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        t0 = time.perf_counter()
        train(model, x_train, y_train, cfg)
        seconds = time.perf_counter() - t0
        acc = evaluate(model, x_test, y_test)
        path = args.out / f"mnist_{name}.h5"
        acc64 = export_model(path, model, data, seed=cfg.seed)
        print(f"{name}: test accuracy {acc:.4f} (torch float32), {acc64:.4f} (lrp_ref float64), "
              f"training time {seconds:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
