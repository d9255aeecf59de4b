"""Random networks for the property and API tests, and the dot-product test of a linear layer's adjoint."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from numpy.testing import assert_allclose

import lrp_ref as L

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
#: the models and digits lrp-ref serve offers by default (tests/test_serve*.py, conftest's server fixture)
SERVE_MODELS = {"cnn": WEIGHTS / "mnist_cnn.h5", "mlp": WEIGHTS / "mnist_mlp.h5", "resnet": WEIGHTS / "mnist_resnet.h5"}
SERVE_SAMPLES = WEIGHTS / "mnist_samples.h5"


def random_mlp(rng: np.random.Generator, sizes: tuple[int, ...] = (6, 5, 4, 3), bias: bool = True) -> L.Sequential:
    layers: list[L.layers.Layer] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        b = rng.normal(size=n_out) if bias else None
        layers.append(L.Dense(rng.normal(size=(n_out, n_in)), b))
        if i < len(sizes) - 2:
            layers.append(L.ReLU())
    return L.Sequential(layers)


def random_cnn(rng: np.random.Generator, bias: bool = True, pool: str = "max") -> L.Sequential:
    """conv(stride 1, pad 1) - relu - pool - conv(stride 2) - relu - flatten - dense - relu - dense; input (2, 8, 8)."""
    def b(n: int) -> np.ndarray | None:
        return rng.normal(scale=0.3, size=n) if bias else None

    pooling = L.MaxPool2d(2) if pool == "max" else L.AvgPool2d(2)
    return L.Sequential([
        L.Conv2d(rng.normal(size=(4, 2, 3, 3)), b(4), padding=1),
        L.ReLU(),
        pooling,
        L.Conv2d(rng.normal(size=(5, 4, 3, 3)) * 0.5, b(5), stride=2, padding=1),
        L.ReLU(),
        L.Flatten(),
        L.Dense(rng.normal(size=(7, 20)) * 0.5, b(7)),
        L.ReLU(),
        L.Dense(rng.normal(size=(3, 7)), b(3)),
    ])


def dot_test(layer: Any, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    """``<linear(a), s> == <a, vjp(s)>`` on random batches, for the whole batch and per sample."""
    a = rng.normal(size=(3, *shape))
    s = rng.normal(size=(3, *layer.output_shape(shape)))
    za = layer.linear(a)
    vs = layer.vjp(s, shape)
    assert vs.shape == a.shape
    lhs, rhs = np.vdot(za, s), np.vdot(a, vs)
    scale = np.vdot(np.abs(za), np.abs(s)) + np.vdot(np.abs(a), np.abs(vs))  # cancellation guard
    assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-14 * scale)
    # per sample too: the adjoint must not mix samples
    per_lhs = (za * s).reshape(3, -1).sum(axis=1)
    per_rhs = (a * vs).reshape(3, -1).sum(axis=1)
    assert_allclose(per_lhs, per_rhs, rtol=1e-12, atol=1e-14 * scale)
