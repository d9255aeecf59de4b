"""Random lrp_ref networks and their exact Keras (TensorFlow 2.14, channels-last) twins.

Used by the iNNvestigate cross-check.  An lrp_ref model is NCHW with PyTorch's parameter
layout; the Keras twin is NHWC:

* ``Dense(w (out, in), b)``  ->  ``Dense(out)`` with kernel ``w.T``; after a ``Flatten`` of
  an image, the kernel's rows are reordered from lrp_ref's (c, h, w) to Keras' (h, w, c);
* ``Conv2d(w (out, in, kh, kw), b)``  ->  ``Conv2D`` with kernel ``w`` as (kh, kw, in, out),
  padding ``"valid"``, or ``"same"`` where the padding is TensorFlow's (``lrp_ref.same_padding``:
  at stride 2 on even sizes one more row and column at the bottom and right);
* a ``ReLU`` after a Dense or Conv2d becomes that layer's ``activation="relu"``, which is how
  Keras models are usually written (iNNvestigate passes the relevance of a fused activation
  through, as lrp_ref's ``Pass`` does);
* pooling with ``"valid"`` padding; ``Flatten`` as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrp_ref import Sequential
from lrp_ref import layers as L

Array = np.ndarray


def random_net(kind: str, seed: int) -> tuple[Sequential, tuple[int, ...]]:
    """An lrp_ref network of a named kind with random weights and biases, and its input shape."""
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> L.Dense:
        return L.Dense(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.3, n_out))

    def conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: Any = 0) -> L.Conv2d:
        w = rng.normal(0, 1 / np.sqrt(c_in * k * k), (c_out, c_in, k, k))
        return L.Conv2d(w, rng.normal(0, 0.3, c_out), stride=stride, padding=padding)

    if kind == "mlp":
        return Sequential([dense(12, 10), L.ReLU(), dense(10, 8), L.ReLU(), dense(8, 4)]), (12,)
    if kind == "cnn_max":
        return Sequential([
            conv(2, 4, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
            conv(4, 5, 3), L.ReLU(), L.Flatten(), dense(5 * 2 * 2, 6), L.ReLU(), dense(6, 3),
        ]), (2, 8, 8)
    if kind == "cnn_avg":
        return Sequential([
            conv(2, 4, 3), L.ReLU(), L.AvgPool2d(2),
            conv(4, 4, 2, stride=2), L.ReLU(), L.Flatten(), dense(4 * 2 * 2, 3),
        ]), (2, 10, 10)
    if kind == "cnn_overlap":
        return Sequential([
            conv(1, 3, 3, padding=1), L.ReLU(), L.MaxPool2d(3, stride=2),
            conv(3, 4, 3, stride=2), L.ReLU(), L.AvgPool2d(1), L.Flatten(), dense(4, 3),
        ]), (1, 9, 9)
    if kind == "cnn_same_stride2":  # TensorFlow's 'same' at stride 2 on even sizes: one more row/column after
        return Sequential([
            conv(2, 4, 3, stride=2, padding=L.same_padding((8, 8), 3, 2)), L.ReLU(),
            conv(4, 4, 3, stride=2, padding=L.same_padding((4, 4), 3, 2)), L.ReLU(),
            L.Flatten(), dense(4 * 2 * 2, 3),
        ]), (2, 8, 8)
    raise ValueError(f"unknown net kind {kind!r}")


NETS = ("mlp", "cnn_max", "cnn_avg", "cnn_overlap", "cnn_same_stride2")


def random_input(shape: tuple[int, ...], kind: str, n: int, seed: int) -> Array:
    """``n`` inputs: U(0, 1) ("pos"), U(-1, 1) ("mixed") or quantised U(0, 1) with ties ("ties")."""
    rng = np.random.default_rng(seed)
    if kind == "pos":
        return rng.uniform(0, 1, (n, *shape))
    if kind == "mixed":
        return rng.uniform(-1, 1, (n, *shape))
    if kind == "ties":
        return np.round(rng.uniform(0, 1, (n, *shape)) * 2) / 2
    raise ValueError(f"unknown input kind {kind!r}")


INPUTS = ("pos", "mixed", "ties")


def explained_inputs(kind: str, shape: tuple[int, ...], input_kind: str, model: Sequential) -> Array:
    """The inputs the cross-check explains on net ``kind``: 4 drawn, those whose predicted output is positive.

    iNNvestigate's deep Taylor explains ``max(f(x), 0)``; where the predicted output is
    positive that is f(x), what lrp_ref explains.
    """
    x = random_input(shape, input_kind, n=4, seed=len(kind) * 31 + INPUTS.index(input_kind))
    return x[model.forward(x).max(axis=1) > 0]


def to_nhwc(x: Array) -> Array:
    return np.moveaxis(x, 1, -1) if x.ndim == 4 else x


def to_nchw(x: Array) -> Array:
    return np.moveaxis(x, -1, 1) if x.ndim == 4 else x


def to_keras(model: Sequential, input_shape: tuple[int, ...]) -> Any:
    """The Keras twin of ``model`` (float64 must be Keras' floatx already)."""
    from tensorflow import keras

    shapes = model.shapes(input_shape)  # boundary shapes, lrp_ref layout
    keras_in = shapes[0] if len(shapes[0]) == 1 else (*shapes[0][1:], shapes[0][0])
    out: list[Any] = [keras.layers.Input(keras_in, dtype="float64")]
    weights: list[tuple[Any, list[Array]]] = []
    layers = list(model)
    i = 0
    while i < len(layers):
        layer = layers[i]
        fused = i + 1 < len(layers) and isinstance(layers[i + 1], L.ReLU)
        act = "relu" if fused and isinstance(layer, (L.Dense, L.Conv2d)) else None
        if isinstance(layer, L.Dense):
            w = layer.weight
            before = shapes[i - 1] if i > 0 and isinstance(layers[i - 1], L.Flatten) else None
            if before is not None and len(before) == 3:  # the Flatten of an image: (c, h, w) -> (h, w, c) rows
                c, h, wd = before
                w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            k = keras.layers.Dense(w.shape[0], activation=act)
            weights.append((k, [w.T, layer.bias]))
        elif isinstance(layer, L.Conv2d):
            kh, kw = layer.kernel_size
            hw = shapes[i][1:]
            if layer.padding == (0, 0):
                pad = "valid"
            elif layer.stride == (1, 1) and layer.padding == (kh // 2, kw // 2) and kh % 2 and kw % 2:
                pad = "same"
            elif layer.padding == L.same_padding(hw, (kh, kw), layer.stride, layer.dilation):
                pad = "same"  # TensorFlow's asymmetric 'same'
            else:
                raise ValueError(f"no Keras padding for {layer.describe()}")
            k = keras.layers.Conv2D(layer.out_channels, (kh, kw), strides=layer.stride, padding=pad, activation=act)
            weights.append((k, [layer.weight.transpose(2, 3, 1, 0), layer.bias]))
        elif isinstance(layer, L.MaxPool2d):
            k = keras.layers.MaxPooling2D(layer.kernel_size, layer.stride, padding="valid")
        elif isinstance(layer, L.AvgPool2d):
            k = keras.layers.AveragePooling2D(layer.kernel_size, layer.stride, padding="valid")
        elif isinstance(layer, L.Flatten):
            k = keras.layers.Flatten()
        elif isinstance(layer, L.ReLU):
            k = keras.layers.Activation("relu")
        else:
            raise ValueError(f"no Keras twin for {layer.describe()}")
        out.append(k(out[-1]))
        i += 2 if act else 1
    net = keras.Model(out[0], out[-1])
    for k, ws in weights:
        k.set_weights(ws)
    return net
