"""lrp_ref.from_keras on files written by Keras itself (tests/fixtures/keras), without Keras.

The fixtures are written by scripts/export_keras_fixtures.py: each model as ``.keras`` and
legacy ``.h5`` by Keras 3.15 (torch backend), and as ``.h5`` (three also as ``.keras``) by
TensorFlow 2.14's tf.keras in ``tf/``, with Keras's outputs and autograd gradients on fixed
inputs in ``expected.h5``.  Keras 3's torch backend multiplies in float32 (see the script), so
its numbers are compared at 1e-5 relative; tf.keras computes in float64, compared at 1e-10.
LRP-0 is also compared at 1e-10 with an exact float64 gradient of the imported model (central
differences on the piecewise-linear net, whose steps are checked to stay on one linear piece).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import rules as R
from lrp_ref.errors import ModelFormatError
from lrp_ref.graph import Graph
from lrp_ref.keras import from_keras, nchw_to_nhwc, nhwc_to_nchw
from lrp_ref.layers import Dense, LinearLayer
from lrp_ref.merge import Add

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
#: fixture folder -> tolerance (relative to the largest value) of Keras's own numbers: Keras 3's torch
#: backend multiplies in float32; tf.keras 2.14 computes in float64
SOURCES = {"keras3": (FIXTURES, 1e-5), "tf": (FIXTURES / "tf", 1e-10)}


def _expected(folder: Path) -> dict[str, dict[str, np.ndarray | bool]]:
    with h5py.File(folder / "expected.h5", "r") as f:
        return {name: {k: f[name][k][()] for k in ("x", "y", "grad")} | {"softmax": bool(f[name].attrs["softmax"])}
                for name in f}


EXPECTED = {source: _expected(folder) for source, (folder, _) in SOURCES.items()}
CASES = [(source, name, fmt) for source, (folder, _) in SOURCES.items() for name in sorted(EXPECTED[source])
         for fmt in ("keras", "h5") if (folder / f"{name}.{fmt}").exists()]
NAMES = sorted(EXPECTED["keras3"])
FORMATS = ("keras", "h5")


def model_input(name: str, x: np.ndarray) -> np.ndarray:
    """The imported model's input for Keras's x: NCHW, except for the channels-first model."""
    return x if name == "channels_first" else nhwc_to_nchw(x)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def lrp0_rules(model: Graph) -> list[R.Rule | None]:
    return [R.LRP0() if isinstance(layer, (LinearLayer, Add)) else None for layer in model]


def exact_gradient(model: Graph, x: np.ndarray, target: np.ndarray, steps: tuple[float, ...] = (1e-3, 1e-4, 1e-5)
                   ) -> np.ndarray:
    """d f_target / dx by central differences, each checked to be exact.

    On a piecewise-linear net the central difference with step h is exact up to rounding
    (~1e-16 |f| / h) while x +- 2h e_i stays on x's linear piece; a kink within reach makes the
    slopes of h and 2h differ.  Each input coordinate takes the largest step whose two slopes agree.
    """
    n, d = x.shape[0], x[0].size
    rows = np.arange(n)

    def slopes(step: float) -> np.ndarray:
        eye = np.eye(d).reshape(d, *x.shape[1:]) * step
        batch = np.concatenate([x[:, None] + eye[None], x[:, None] - eye[None]], axis=1)  # (n, 2d, ...)
        out = model.forward(batch.reshape(n * 2 * d, *x.shape[1:])).reshape(n, 2 * d, -1)
        f = out[rows, :, target]  # (n, 2d)
        return ((f[:, :d] - f[:, d:]) / (2 * step)).reshape(x.shape)

    grad = np.full(x.shape, np.nan)
    for h in steps:
        g1, g2 = slopes(h), slopes(2 * h)
        fits = np.isnan(grad) & (np.abs(g1 - g2) <= 1e-9 * np.abs(g1).max())
        grad[fits] = g1[fits]
    assert not np.isnan(grad).any(), "no step short enough to stay on one linear piece"
    return grad


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}.{c[2]}")
def imported(request: pytest.FixtureRequest) -> tuple[str, Graph, dict[str, np.ndarray | bool], float]:
    source, name, fmt = request.param
    folder, rtol = SOURCES[source]
    return name, from_keras(folder / f"{name}.{fmt}"), EXPECTED[source][name], rtol


def test_forward_equals_keras(imported: tuple[str, Graph, dict, float]) -> None:
    name, model, e, rtol = imported
    ours = model.forward(model_input(name, e["x"]))
    if e["softmax"]:
        assert "softmax" in model.metadata["import_notes"]
        ours = softmax(ours)
    assert_allclose(ours, e["y"], rtol=0, atol=rtol * np.abs(e["y"]).max())
    assert model.metadata["input_shape"] == model_input(name, e["x"]).shape[1:]


def test_lrp0_is_gradient_times_input_and_the_ledger_balances(imported: tuple[str, Graph, dict, float]) -> None:
    name, model, e, rtol = imported
    x = model_input(name, e["x"])
    ex = lrp_ref.explain(model, x, lrp0_rules(model))
    grad = exact_gradient(model, x, ex.target)
    assert_allclose(ex.relevance, x * grad, rtol=0, atol=1e-10 * np.abs(x * grad).max())
    ex.ledger.check_balance()
    ex.ledger.check_conservation()
    # and the gradient is Keras's own (autograd: torch in float32 arithmetic, TensorFlow in float64)
    keras_grad = e["grad"][np.arange(len(x)), ex.target]
    ours = grad if name == "channels_first" or grad.ndim != 4 else nchw_to_nhwc(grad)
    assert_allclose(ours, keras_grad, rtol=0, atol=rtol * np.abs(keras_grad).max())
    keras_gx = e["x"] * keras_grad
    relevance = ex.relevance if name == "channels_first" or grad.ndim != 4 else nchw_to_nhwc(ex.relevance)
    assert_allclose(relevance, keras_gx, rtol=0, atol=rtol * np.abs(keras_gx).max())


@pytest.mark.parametrize("name", NAMES)
def test_both_writers_give_the_same_model(name: str) -> None:
    a, b = (from_keras(FIXTURES / f"{name}.{fmt}") for fmt in FORMATS)
    assert a.describe() == b.describe()
    x = model_input(name, EXPECTED["keras3"][name]["x"])
    assert_allclose(a.forward(x), b.forward(x), rtol=0, atol=0)


def test_structure() -> None:
    residual = from_keras(FIXTURES / "residual.keras")
    assert type(residual) is Graph
    kinds = [type(layer).__name__ for layer in residual]
    assert kinds.count("BatchNorm2d") == 2 and "Add" in kinds and "Concat" in kinds and "GlobalAvgPool2d" in kinds
    stride2 = from_keras(FIXTURES / "same_stride2.h5")
    assert isinstance(stride2, lrp_ref.Sequential)
    assert stride2[0].padding == (0, 1, 0, 1)  # TensorFlow's 'same' at stride 2 on 8 x 8: the odd row below
    assert stride2[2].padding == (0, 1, 0, 1)
    float32 = from_keras(FIXTURES / "sequential_cnn.keras", dtype=np.float32)
    assert float32.dtype == np.float32


def test_flatten_order_analytic(tmp_path: Path) -> None:
    """A hand-written Keras 2 file: Flatten of (2, 2, 2) then an identity Dense returns Keras's NHWC flatten."""
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 2, 2, 2], "name": "in"}},
        {"class_name": "Flatten", "config": {"name": "flatten", "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 8, "activation": "linear", "use_bias": False}}]}}
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights/dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g.create_dataset("dense/kernel:0", data=np.eye(8))
    model = from_keras(path)
    x = np.arange(16.0).reshape(2, 2, 2, 2)  # (N, H, W, C)
    assert_allclose(model.forward(nhwc_to_nchw(x)), x.reshape(2, -1), rtol=0, atol=0)
    assert isinstance(model[1], Dense)


def test_no_keras_or_tensorflow_is_imported() -> None:
    code = ("import sys, lrp_ref; lrp_ref.from_keras(sys.argv[1]); lrp_ref.from_keras(sys.argv[2]); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "residual.keras"), str(FIXTURES / "residual.h5")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------- refusals


def rewrite_zip(src: Path, dst: Path, edit: dict[str, bytes | None]) -> None:
    """Copy the zip ``src`` to ``dst``, replacing (bytes) or dropping (None) the members in ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def edited_config(src: Path, change: object) -> bytes:
    with zipfile.ZipFile(src) as z:
        config = json.loads(z.read("config.json"))
    change(config)  # type: ignore[operator]
    return json.dumps(config).encode()


def refusal(path: Path, match: str, **kwargs: object) -> str:
    with pytest.raises(ModelFormatError, match=match) as info:
        from_keras(path, **kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    return text


def test_truncated_files(tmp_path: Path) -> None:
    for fmt in FORMATS:
        data = (FIXTURES / f"residual.{fmt}").read_bytes()
        path = tmp_path / f"cut.{fmt}"
        path.write_bytes(data[: len(data) // 2])
        refusal(path, "truncated|not a Keras model file|could not read")


def test_not_a_keras_file(tmp_path: Path) -> None:
    path = tmp_path / "x.keras"
    path.write_text("hello")
    refusal(path, "neither a zip")
    with pytest.raises(FileNotFoundError):
        from_keras(tmp_path / "missing.keras")
    model = from_keras(FIXTURES / "mlp_bn.h5")
    lrp_ref.save(lrp_ref.Sequential(list(model)), tmp_path / "own.h5")
    refusal(tmp_path / "own.h5", "lrp_ref's own model format")


def test_zip_without_config_or_weights(tmp_path: Path) -> None:
    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "a.keras", {"config.json": None})
    refusal(tmp_path / "a.keras", "a zip without config.json")
    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "b.keras", {"model.weights.h5": None})
    refusal(tmp_path / "b.keras", "a zip without model.weights.h5")


def test_missing_and_misshapen_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    shutil.copy(FIXTURES / "sequential_cnn.h5", path)
    with h5py.File(path, "r+") as f:
        name = next(n for n in f["model_weights"] if n.startswith("conv2d"))
        names = [k.decode() if isinstance(k, bytes) else k for k in f["model_weights"][name].attrs["weight_names"]]
        kernel = next(k for k in names if k.endswith("kernel"))
        del f["model_weights"][name][kernel]
        f["model_weights"][name].create_dataset(kernel, data=np.zeros((3, 3, 2, 5)))
    refusal(path, rf"layer '{name}' \(Conv2D\) weight .*kernel.*: weight of shape \(3, 3, 2, 5\); "
                  r"expected \(3, 3, 2, 4\)")
    with h5py.File(path, "r+") as f:
        del f["model_weights"][name]
    refusal(path, rf"layer '{name}' \(Conv2D\): missing weights")
    # the .keras zip: drop the bias variable of the first Dense
    with zipfile.ZipFile(FIXTURES / "mlp_bn.keras") as z:
        raw = z.read("model.weights.h5")
    buffer = io.BytesIO(raw)
    with h5py.File(buffer, "r+") as f:
        del f["layers/dense_1/vars/1"]
    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "w.keras", {"model.weights.h5": buffer.getvalue()})
    refusal(tmp_path / "w.keras", r"\(Dense\): expected 2 variables \(kernel, bias\); found 0")


def test_unsupported_layer_and_options(tmp_path: Path) -> None:
    def lstm(config: dict) -> None:
        config["config"]["layers"][1]["class_name"] = "LSTM"

    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "a.keras",
                {"config.json": edited_config(FIXTURES / "mlp_bn.keras", lstm)})
    text = refusal(tmp_path / "a.keras", r"layer 'dense\w*' \(LSTM\): the Keras class 'LSTM' is not supported")
    assert "Conv2D" in text and "BatchNormalization" in text

    def tanh(config: dict) -> None:
        config["config"]["layers"][1]["config"]["activation"] = "tanh"

    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "b.keras",
                {"config.json": edited_config(FIXTURES / "mlp_bn.keras", tanh)})
    refusal(tmp_path / "b.keras", r"activation 'tanh' is not supported")

    def early_softmax(config: dict) -> None:
        config["config"]["layers"][3]["config"]["activation"] = "softmax"

    rewrite_zip(FIXTURES / "mlp_bn.keras", tmp_path / "c.keras",
                {"config.json": edited_config(FIXTURES / "mlp_bn.keras", early_softmax)})
    refusal(tmp_path / "c.keras", r"follows the softmax")


def test_unknown_input_size_needs_input_shape(tmp_path: Path) -> None:
    def unknown(config: dict) -> None:
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, None, None, 3]

    rewrite_zip(FIXTURES / "residual.keras", tmp_path / "a.keras",
                {"config.json": edited_config(FIXTURES / "residual.keras", unknown)})
    refusal(tmp_path / "a.keras", r"unknown sizes; pass input_shape")
    with pytest.raises(lrp_ref.IOArgumentError, match="input_shape must be a tuple of positive ints"):
        from_keras(tmp_path / "a.keras", input_shape="8, 8, 3")
    with pytest.raises(lrp_ref.IOArgumentError, match="max_bytes must be a positive int"):
        from_keras(tmp_path / "a.keras", max_bytes=0)
    model = from_keras(tmp_path / "a.keras", input_shape=(8, 8, 3))
    x = nhwc_to_nchw(EXPECTED["keras3"]["residual"]["x"])
    assert_allclose(model.forward(x), from_keras(FIXTURES / "residual.keras").forward(x), rtol=0, atol=0)


def test_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refusal(FIXTURES / "residual.keras", r"model.weights.h5 declares \d+ bytes, more than the limit 1000",
            max_bytes=1000)
    refusal(FIXTURES / "residual.h5", r"more than max_bytes=1000", max_bytes=1000)
    monkeypatch.setattr("lrp_ref.keras.MAX_JSON_BYTES", 100)
    refusal(FIXTURES / "residual.keras", r"config.json declares \d+ bytes, more than the limit 100")
    refusal(FIXTURES / "residual.h5", r"'model_config' holds \d+ bytes of JSON, more than MAX_JSON_BYTES=100")
    monkeypatch.undo()
    members = {f"junk{i}": b"" for i in range(70)}
    with zipfile.ZipFile(tmp_path / "many.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    refusal(tmp_path / "many.keras", r"the zip holds 70 members")
    with zipfile.ZipFile(tmp_path / "dup.keras", "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("config.json", b"{}")
        z.writestr("config.json", b"{}")
    refusal(tmp_path / "dup.keras", r"names a member twice")


def test_weights_only_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    with h5py.File(FIXTURES / "mlp_bn.h5", "r") as src, h5py.File(path, "w") as dst:
        for key in src["model_weights"]:
            src.copy(src["model_weights"][key], dst, name=key)
        dst.attrs["layer_names"] = src["model_weights"].attrs["layer_names"]
    refusal(path, r"a weights-only file \(save_weights\)")



# ----------------------------------------------------------------------------- hand-written Keras 2 files


def keras2_file(path: Path, layers: list[dict], weights: dict[str, dict[str, np.ndarray]],
                functional: dict | None = None) -> Path:
    """A legacy .h5 as tf.keras 2 writes it: model_config JSON and model_weights/<layer>/<layer>/<var>:0."""
    config = ({"class_name": "Functional", "config": {"name": "m", "layers": layers, **functional}} if functional
              else {"class_name": "Sequential", "config": {"name": "m", "layers": layers}})
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.14.0"
        for layer, variables in weights.items():
            g = f.create_group(f"model_weights/{layer}")
            g.attrs["weight_names"] = [f"{layer}/{k}:0".encode() for k in variables]
            for k, v in variables.items():
                g.create_dataset(f"{layer}/{k}:0", data=v)
    return path


def entry(cls: str, name: str, inbound: list | None = None, **config: object) -> dict:
    e: dict = {"class_name": cls, "config": {"name": name, **config}}
    if inbound is not None:
        e["name"], e["inbound_nodes"] = name, [[[t, 0, 0, {}] for t in inbound]] if inbound else []
    return e


def test_refusals_of_structure(tmp_path: Path) -> None:
    image_in = entry("InputLayer", "in", batch_input_shape=[None, 4, 4, 2])
    dense = {"dense": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}}
    path = keras2_file(tmp_path / "a.h5", [image_in, entry("Dense", "dense", units=3)], dense)
    refusal(path, r"layer 'dense' \(Dense\): Dense on a tensor of shape \(4, 4, 2\) acts on its last axis")
    path = keras2_file(tmp_path / "b.h5", [image_in, entry("Flatten", "flatten")], {})
    refusal(path, r"the model's output .* is a flattened image")
    two = {"input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["add", 0, 0]]}
    layers = [entry("InputLayer", "a", [], batch_input_shape=[None, 3]),
              entry("InputLayer", "b", [], batch_input_shape=[None, 3]), entry("Add", "add", ["a", "b"])]
    refusal(keras2_file(tmp_path / "c.h5", layers, {}, two), r"the model has 2 inputs; lrp_ref models take one")
    mixed = [image_in, entry("Conv2D", "c1", filters=2, kernel_size=[1, 1], data_format="channels_first"),
             entry("MaxPooling2D", "p", pool_size=[2, 2], data_format="channels_last")]
    refusal(keras2_file(tmp_path / "d.h5", mixed, {}), r"the layers mix data formats")
    relu6 = [image_in, entry("ReLU", "r", max_value=6.0)]
    refusal(keras2_file(tmp_path / "e.h5", relu6, {}), r"layer 'r' \(ReLU\): only the plain ReLU")
    nested = [image_in, {"class_name": "Sequential", "config": {"name": "inner", "layers": []}}]
    refusal(keras2_file(tmp_path / "f.h5", nested, {}), r"layer 'inner' \(Sequential\): the Keras class 'Sequential'")
    causal = [image_in, entry("Conv2D", "c", filters=1, kernel_size=[1, 1], padding="causal", use_bias=False)]
    refusal(keras2_file(tmp_path / "g.h5", causal, {"c": {"kernel": np.ones((1, 1, 2, 1))}}),
            r"padding must be 'valid' or 'same'; got 'causal'")
    pad_pool = [image_in, entry("ZeroPadding2D", "zp", padding=[[1, 1], [1, 1]]), entry("MaxPooling2D", "p",
                                                                                      pool_size=[2, 2])]
    refusal(keras2_file(tmp_path / "z1.h5", pad_pool, {}), r"layer 'p' \(MaxPooling2D\): max pooling over "
            r"ZeroPadding2D's zeros .* only on non-negative input")
    pad_flat = [image_in, entry("ZeroPadding2D", "zp", padding=1), entry("Flatten", "f")]
    refusal(keras2_file(tmp_path / "z2.h5", pad_flat, {}),
            r"layer 'f' \(Flatten\): reads the output of a ZeroPadding2D")
    pad_end = [image_in, entry("ReLU", "r"), entry("ZeroPadding2D", "zp", padding=1)]
    refusal(keras2_file(tmp_path / "z3.h5", pad_end, {}), r"the model ends with a ZeroPadding2D")
    nan = {"dense": {"kernel": np.full((3, 3), np.nan), "bias": np.zeros(3)}}
    flat_in = entry("InputLayer", "in", batch_input_shape=[None, 3])
    refusal(keras2_file(tmp_path / "h.h5", [flat_in, entry("Dense", "dense", units=3)], nan),
            r"non-finite value")


def test_keras2_functional_with_shared_input_and_concatenated_flats(tmp_path: Path) -> None:
    """Concatenated flattened images of two shapes feed a Dense: the orders concatenate (checked by hand)."""
    rng = np.random.default_rng(3)
    k = rng.normal(size=(8 + 2, 4))
    functional = {"input_layers": [["in", 0, 0]], "output_layers": [["dense", 0, 0]]}
    layers = [entry("InputLayer", "in", [], batch_input_shape=[None, 2, 2, 2]),
              entry("Flatten", "f1", ["in"]),
              entry("MaxPooling2D", "pool", ["in"], pool_size=[2, 2]),
              entry("Flatten", "f2", ["pool"]),
              entry("Concatenate", "cat", ["f1", "f2"], axis=-1),
              entry("Dense", "dense", ["cat"], units=4, use_bias=False, activation="linear")]
    model = from_keras(keras2_file(tmp_path / "m.h5", layers, {"dense": {"kernel": k}}, functional))
    x = rng.normal(size=(3, 2, 2, 2))
    keras_like = np.concatenate([x.reshape(3, -1), x.max(axis=(1, 2))], axis=1) @ k  # NHWC flatten, then Dense
    assert_allclose(model.forward(nhwc_to_nchw(x)), keras_like, rtol=1e-13, atol=1e-13)


def _json_paths(value: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for k, v in items:
        out += _json_paths(v, (*path, k))
    return out


@pytest.mark.parametrize("fixture", ["residual.keras", "tf/residual.h5", "flat_order.keras"])
def test_mutated_configurations_import_or_are_refused_clearly(tmp_path: Path, fixture: str) -> None:
    """Seeded random edits of the architecture JSON: every one imports or is a specific ModelFormatError.

    None may escape as another exception or as the generic "could not read the file" of a damaged file.
    """
    src = FIXTURES / fixture
    if src.suffix == ".keras":
        with zipfile.ZipFile(src) as z:
            config = json.loads(z.read("config.json"))
    else:
        with h5py.File(src, "r") as f:
            config = json.loads(f.attrs["model_config"])
    paths = _json_paths(config)[1:]
    rng = np.random.default_rng(0)
    values = [None, 0, -1, 2**40, 1.5, "x", "same", [], {}, [None], True, "relu", "softmax", [1, 2, 3]]
    outcomes = {"imported": 0, "refused": 0}
    for trial in range(40):
        mutated = json.loads(json.dumps(config))
        path = paths[rng.integers(len(paths))]
        node = mutated
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = values[rng.integers(len(values))]
        target = tmp_path / f"m{trial}{src.suffix}"
        if src.suffix == ".keras":
            rewrite_zip(src, target, {"config.json": json.dumps(mutated).encode()})
        else:
            shutil.copy(src, target)
            with h5py.File(target, "r+") as f:
                f.attrs["model_config"] = json.dumps(mutated)
        try:
            from_keras(target)
            outcomes["imported"] += 1
        except ModelFormatError as exc:
            assert "could not read the file" not in str(exc), (path, str(exc))
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 5 and outcomes["imported"] > 5, outcomes


def test_is_keras_h5_tells_keras_files_from_lrp_ref_files(tmp_path: Path) -> None:
    from lrp_ref.keras import is_keras_h5

    assert is_keras_h5(FIXTURES / "residual.h5") and is_keras_h5(FIXTURES / "tf" / "mlp_bn.h5")
    lrp_ref.save(lrp_ref.Sequential(list(from_keras(FIXTURES / "mlp_bn.h5"))), tmp_path / "own.h5")
    assert not is_keras_h5(tmp_path / "own.h5")
    assert not is_keras_h5(FIXTURES / "residual.keras")  # a zip
    assert not is_keras_h5(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    assert not is_keras_h5(tmp_path / "junk.h5")


@pytest.mark.parametrize("source, name, fmt", CASES, ids=[f"{s}-{n}.{f}" for s, n, f in CASES])
def test_saved_and_reloaded_the_model_computes_identically(tmp_path: Path, source: str, name: str, fmt: str) -> None:
    """lrp_ref.save of an imported model (what lrp-ref convert writes) re-loads to the same numbers, bit for bit."""
    model = from_keras(SOURCES[source][0] / f"{name}.{fmt}")
    lrp_ref.save(model, tmp_path / "m.h5")  # import notes included: one str, as the format stores it
    again = lrp_ref.load(tmp_path / "m.h5")
    x = model_input(name, EXPECTED[source][name]["x"])
    assert_allclose(again.forward(x), model.forward(x), rtol=0, atol=0)
    assert again.describe() == model.describe()
