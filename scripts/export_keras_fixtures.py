#!/usr/bin/env python3
"""Write the Keras test fixtures: small models saved by Keras itself, with Keras's outputs and gradients.

    KERAS_BACKEND=torch .venv-xcheck/bin/python scripts/export_keras_fixtures.py [DIR]
    .venv-innvestigate/bin/python scripts/export_keras_fixtures.py --tf [DIR]

DIR defaults to tests/fixtures/keras (with --tf, tests/fixtures/keras/tf).  The first
needs Keras 3 with the torch backend (scripts/setup_crosscheck.sh installs it; no
TensorFlow), the second TensorFlow 2.14's tf.keras (scripts/setup_innvestigate.sh), which
writes the legacy .h5 of iNNvestigate's users (and .keras for :data:`TF_KERAS_V3`; not the
channels-first model: TensorFlow's CPU convolution takes NHWC only).  Keras runs with floatx
float64 and the weights are float64.  For every model of :data:`MODELS`:

* ``<name>.keras`` (Keras 3's zip) and ``<name>.h5`` (its legacy HDF5 writer),
  written by ``model.save``, with seeded random weights (batch norms with
  random moving statistics);
* in ``expected.h5``, group ``<name>``: ``x`` (N, H, W, C) or (N, F), the
  inputs; ``y`` the model's output on them (softmax included where the model
  ends with one; attribute ``softmax``); ``grad`` (N, K, *x) the gradient of
  each output's *logit* (the softmax removed) with respect to the input, by
  the backend's autograd through the Keras model.

Keras 3's torch backend stores float64 weights but multiplies in float32 (its
``result_type`` maps float64 to float32 on every backend but TensorFlow), so
its ``y`` and ``grad`` are float32-accurate: the tests compare them at 1e-5
relative.  tf.keras computes in float64 throughout (``grad`` by
``tf.GradientTape``): those files are the float64 evidence, compared at 1e-10.

``make test`` (tests/test_keras.py) imports the files with ``lrp_ref.from_keras``
and checks the forward against ``y`` and LRP-0 against ``x * grad``; the live
cross-check (tests/crosscheck/test_keras_live.py) runs :func:`export` into a
temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _keras(tf: bool = False) -> Any:
    """Keras 3 (floatx float64), or with ``tf`` TensorFlow's tf.keras 2 (floatx float64)."""
    if tf:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow
        except ImportError:  # pragma: no cover - depends on the environment
            sys.exit("export_keras_fixtures.py --tf needs TensorFlow: run it with .venv-innvestigate/bin/python")
        tensorflow.keras.backend.set_floatx("float64")
        return tensorflow.keras
    try:
        import keras
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("export_keras_fixtures.py needs Keras 3 (scripts/setup_crosscheck.sh); run it with "
                 "KERAS_BACKEND=torch .venv-xcheck/bin/python")
    keras.config.set_floatx("float64")
    return keras


def _is_tf_keras(k: Any) -> bool:
    return not hasattr(k, "ops")  # Keras 3 has keras.ops, tf.keras 2 has not


def _version(k: Any) -> str:
    if _is_tf_keras(k):
        import tensorflow

        return f"tf.keras {tensorflow.keras.__version__ if hasattr(tensorflow.keras, '__version__') else ''} " \
               f"(TensorFlow {tensorflow.__version__})"
    return str(k.__version__)


def _sequential_cnn(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((10, 10, 2)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2),
                         L.Conv2D(5, 3, activation="relu"), L.Flatten(), L.Dense(6, activation="relu"),
                         L.Dropout(0.5), L.Dense(3)], name="sequential_cnn")


def _residual(k: Any) -> Any:
    L = k.layers
    x = k.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", use_bias=False)(x)
    a = L.ReLU()(L.BatchNormalization()(a))
    b = L.Conv2D(4, 3, padding="same")(a)
    b = L.BatchNormalization(epsilon=1e-5)(b)
    s = L.Activation("relu")(L.Add()([a, b]))
    c = L.Concatenate()([s, L.Conv2D(2, 1, activation="relu")(x)])
    y = L.Dense(3)(L.GlobalAveragePooling2D()(c))
    return k.Model(x, y, name="residual")


def _same_stride2(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((8, 8, 2)), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                         L.Conv2D(3, 3, strides=2, padding="same", activation="relu"), L.Flatten(), L.Dense(3)],
                        name="same_stride2")


def _pools_same(k: Any) -> Any:
    L = k.layers
    # Keras 3.15's torch backend pads an asymmetric 'same' average pool by replicating the edge
    # (keras-team/keras#19721, #23233), unlike TensorFlow, which leaves the padding out of the
    # average; so the asymmetric case (stride 2) is written with tf.keras only (--tf).
    stride = 2 if _is_tf_keras(k) else 1
    return k.Sequential([k.Input((9, 9, 2)), L.Conv2D(3, 2, activation="relu"),
                         L.AveragePooling2D(3, strides=stride, padding="same"),
                         L.MaxPooling2D(3, strides=2, padding="same"),
                         L.Flatten(), L.Dense(4, activation="softmax")], name="pools_same")


def _dilation_groups(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((11, 11, 2)), L.Conv2D(4, 3, dilation_rate=2, activation="relu"),
                         L.Conv2D(4, 3, groups=2, padding="same"), L.ReLU(),
                         L.GlobalMaxPooling2D(), L.Dense(3)], name="dilation_groups")


def _mlp_bn(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((12,)), L.Dense(8, use_bias=False), L.BatchNormalization(center=False),
                         L.Activation("relu"), L.Dense(6, activation="relu"), L.Activation("linear"),
                         L.BatchNormalization(scale=False), L.Dense(4), L.Softmax()], name="mlp_bn")


def _flat_order(k: Any) -> Any:
    """Flattened images through a batch norm and a concatenation: the feature order in every form."""
    L = k.layers
    x = k.Input((6, 6, 2))
    a = L.Conv2D(3, 3, activation="relu")(x)
    f1 = L.BatchNormalization()(L.Flatten()(a))
    f2 = L.Flatten()(L.MaxPooling2D(2)(a))
    g = L.GlobalAveragePooling2D(keepdims=True)(a)
    f3 = L.Flatten()(g)
    h = L.Concatenate()([f1, f2, f3])
    y = L.Dense(3)(L.Dense(5, activation="relu")(h))
    return k.Model(x, y, name="flat_order")


def _channels_first(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((2, 7, 7)), L.Conv2D(3, 3, data_format="channels_first", activation="relu"),
                         L.MaxPooling2D(2, data_format="channels_first"),
                         L.BatchNormalization(axis=1), L.Flatten(data_format="channels_first"), L.Dense(3)],
                        name="channels_first")


def _zero_padding(k: Any) -> Any:
    """ZeroPadding2D before a strided convolution (as in ResNet's stem), a max pooling and an average pooling."""
    L = k.layers
    return k.Sequential([k.Input((9, 9, 2)), L.ZeroPadding2D(2), L.Conv2D(3, 5, strides=2, activation="relu"),
                         L.ZeroPadding2D(((0, 1), (1, 0))), L.MaxPooling2D(3, strides=2),
                         L.ZeroPadding2D(1), L.AveragePooling2D(2), L.Flatten(), L.Dense(3)], name="zero_padding")


#: name -> builder of the Keras model (new models go last: a model's seeds are its position here)
MODELS: dict[str, Callable[[Any], Any]] = {
    "sequential_cnn": _sequential_cnn, "residual": _residual, "same_stride2": _same_stride2,
    "pools_same": _pools_same, "dilation_groups": _dilation_groups, "mlp_bn": _mlp_bn,
    "flat_order": _flat_order, "channels_first": _channels_first, "zero_padding": _zero_padding,
}


#: the models tf.keras also writes as .keras (its v3 zip, whose weights file names groups by class)
TF_KERAS_V3 = ("sequential_cnn", "residual", "flat_order")


def _randomise(model: Any, rng: np.random.Generator) -> None:
    """Seeded random weights; batch norms get random moving statistics (inference must use them)."""
    for layer in model.layers:
        values = []
        for v in layer.weights:
            shape, name = tuple(v.shape), v.name.rsplit("/", 1)[-1].split(":")[0]
            if name in ("kernel",):
                fan_in = int(np.prod(shape[:-1]))
                values.append(rng.normal(0, 1 / np.sqrt(fan_in), shape))
            elif name in ("bias", "beta", "moving_mean"):
                values.append(rng.normal(0, 0.3, shape))
            elif name in ("gamma",):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name == "moving_variance":
                values.append(rng.uniform(0.5, 2.0, shape))
            else:
                raise ValueError(f"unexpected variable {v.name}")
        layer.set_weights(values)


def _logits(k: Any, model: Any) -> tuple[Any, bool]:
    """The model without its final softmax (same weights), and whether it had one."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax" or (type(last).__name__ == "Activation"
                                            and last.activation is k.activations.softmax):
        return k.Model(model.inputs, model.layers[-2].output), True
    if getattr(last, "activation", None) is k.activations.softmax:
        clone = k.models.clone_model(model)
        clone.set_weights(model.get_weights())
        clone.layers[-1].activation = k.activations.linear
        return clone, True
    return model, False


def _gradient(model: Any, x: np.ndarray, tf: bool) -> np.ndarray:
    """(N, K, *x) d logit_k / d x by the backend's autograd through the Keras model (torch or TensorFlow)."""
    if tf:
        import tensorflow

        xt = tensorflow.constant(x)
        with tensorflow.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            y = model(xt, training=False)
            outputs = [y[:, k] for k in range(y.shape[1])]
        return np.stack([tape.gradient(o, xt).numpy() for o in outputs], axis=1)
    import torch

    xt = torch.tensor(x, requires_grad=True)
    y = model(xt, training=False)
    rows = [torch.autograd.grad(y[:, k].sum(), xt, retain_graph=True)[0].numpy() for k in range(y.shape[1])]
    return np.stack(rows, axis=1)


def export(out: Path, names: list[str] | None = None, tf: bool = False,
           formats: tuple[str, ...] = ("keras", "h5")) -> dict[str, dict[str, np.ndarray]]:
    """Build, save and run the models ``names`` (default all); (re)write their groups of ``expected.h5``.

    Returns {name: {x, y, grad, softmax}}.

    With ``tf``, the models are built with tf.keras 2 (TensorFlow, float64 throughout).
    """
    k = _keras(tf)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, np.ndarray]] = {}
    for name in names or list(MODELS):
        i = list(MODELS).index(name)
        if tf and name == "channels_first":
            continue  # TensorFlow's CPU convolution takes NHWC only
        model = MODELS[name](k)
        _randomise(model, np.random.default_rng(100 + i))
        shape = tuple(model.inputs[0].shape[1:])
        x = np.random.default_rng(200 + i).uniform(-1, 1, (3, *shape))
        y = model(x, training=False)
        y = np.asarray(y.numpy() if tf else k.ops.convert_to_numpy(y))
        logits, softmax = _logits(k, model)
        results[name] = {"x": x, "y": y, "grad": _gradient(logits, x, tf), "softmax": np.array(softmax)}
        for fmt in formats if not tf or name in TF_KERAS_V3 else ("h5",):
            model.save(out / f"{name}.{fmt}")
        print(f"{name}: {model.count_params()} parameters, input {shape}, output {y.shape[1:]}"
              + (" (softmax)" if softmax else ""))
    with h5py.File(out / "expected.h5", "w" if names is None else "a") as f:
        f.attrs["keras_version"] = _version(k)
        f.attrs["backend"] = k.backend.backend()
        f.attrs["floatx"] = k.backend.floatx()
        for name, r in results.items():
            if name in f:
                del f[name]
            g = f.create_group(name)
            for key in ("x", "y", "grad"):
                g.create_dataset(key, data=r[key], track_times=False)
            g.attrs["softmax"] = bool(r["softmax"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("dir", nargs="?", help="default tests/fixtures/keras (with --tf: tests/fixtures/keras/tf)")
    parser.add_argument("--tf", action="store_true", help="build with TensorFlow's tf.keras 2 (.venv-innvestigate): "
                        ".h5 (the format of iNNvestigate's users), and .keras for TF_KERAS_V3")
    parser.add_argument("--model", action="append", choices=list(MODELS),
                        help="only this model (repeatable; the others in expected.h5 are kept)")
    args = parser.parse_args(argv)
    default = ROOT / "tests" / "fixtures" / "keras"
    out = Path(args.dir) if args.dir else default / "tf" if args.tf else default
    export(out, names=args.model, tf=args.tf)
    return 0


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy.*")
    sys.exit(main())
