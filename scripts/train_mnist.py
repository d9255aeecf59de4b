"""Deterministically train the two small MNIST reference models used by ``lrp_ref``.

Trains, on CPU with PyTorch, in a fixed and reproducible way:

* ``cnn``: Conv2d(1,16,5) -> ReLU -> MaxPool2d(2) -> Conv2d(16,32,5) -> ReLU
  -> MaxPool2d(2) -> Flatten -> Linear(512,100) -> ReLU -> Linear(100,10)
* ``mlp``: Flatten -> Linear(784,300) -> ReLU -> Linear(300,100) -> ReLU
  -> Linear(100,10)

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
own environment; PyTorch is needed here only, never by ``lrp_ref`` itself), or::

    python scripts/train_mnist.py --data DIR_WITH_IDX_FILES --out weights

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


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe: Adam, per-epoch exponential learning-rate decay."""

    epochs: int
    lr: float = 1e-3
    lr_decay: float = 0.85
    batch_size: int = 128
    seed: int = 0


MODELS: dict[str, tuple[Callable[[], nn.Sequential], TrainConfig]] = {
    "cnn": (build_cnn, TrainConfig(epochs=15)),
    "mlp": (build_mlp, TrainConfig(epochs=20)),
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


def export_model(path: Path, model: nn.Sequential, data: MnistData, *, seed: int) -> float:
    """Write a trained model as an lrp_ref HDF5 file; return its float64 test accuracy.

    The accuracy recorded is that of the shipped float64 lrp_ref model on the
    10,000 MNIST test images, not of the float32 PyTorch model it came from.
    """
    import lrp_ref

    net = to_lrp_ref(model)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    lrp_ref.save(lrp_ref.Sequential(net.layers, metadata), path)
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
