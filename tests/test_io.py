"""The HDF5 model format (lrp_ref.io): exact round trips, the file layout, and every refusal.

Bad files are crafted with h5py directly: most start from a valid file written
by ``save`` and break one thing in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref.io
from lrp_ref import AvgPool2d, Conv2d, Dense, Flatten, LrpRefError, MaxPool2d, ModelFormatError, ReLU, Sequential, cli
from lrp_ref.errors import IOArgumentError
from lrp_ref.io import check_file, load, read_model, save, write_model

INPUT_SHAPE = (4, 11, 12)

META: dict[str, Any] = {
    "input_shape": INPUT_SHAPE,
    "class_names": ["zero", "one", "twö"],
    "input_scale": np.array([0.5, 0.25, 1.0, 2.0]),
    "input_offset": -0.5,
    "input_low": -0.5,
    "input_high": np.array([1.0, 2.0, 3.0, 4.0]),
    "dataset": "synthetic",
    "dataset_license": "CC0-1.0",
    "training_script": "tests/test_io.py",
    "seed": 1234,
    "test_accuracy": 0.875,
    "note": "free-form text",
    "epochs": 7,
    "learning_rate": 0.01,
    "milestones": np.array([3, 5], dtype=np.int64),
    "loss_curve": np.array([2.3, 0.4, 0.1]),
}


def every_layer_model(dtype: str = "float64", metadata: dict[str, Any] | None = None) -> Sequential:
    """Conv2d (stride, padding, dilation, groups), ReLU, MaxPool2d (padding), AvgPool2d x2, Flatten, Dense x2."""
    rng = np.random.default_rng(0)
    layers = [
        Conv2d(rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6), stride=(1, 2), padding=(2, 1), dilation=(2, 1),
               groups=2),                                                  # (4, 11, 12) -> (6, 11, 6)
        ReLU(),
        MaxPool2d(3, stride=2, padding=1),                                 # -> (6, 6, 3)
        AvgPool2d((2, 1), window_weight=np.array([[0.7], [0.2]])),         # modified window weights -> (6, 3, 3)
        AvgPool2d(2, stride=1),                                            # default average -> (6, 2, 2)
        Flatten(),                                                         # -> (24,)
        Dense(rng.normal(size=(7, 24)), rng.normal(size=7)),
        ReLU(),
        Dense(rng.normal(size=(3, 7))),                                    # no bias
    ]
    return Sequential(layers, META if metadata is None else metadata).astype(dtype)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.h5"
    save(every_layer_model(), path)
    return path


def edited(path: Path, edit: Callable[[h5py.File], object]) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def replace(f: h5py.File, name: str, data: Any) -> None:
    del f[name]
    f[name] = data


def assert_same_metadata(found: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(found) == set(expected)
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            assert isinstance(found[key], np.ndarray) and found[key].dtype == value.dtype, key
            assert_array_equal(found[key], value)
        else:
            assert type(found[key]) is type(value) and found[key] == value, key


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_every_layer_type_is_exact(tmp_path: Path, dtype: str) -> None:
    model = every_layer_model(dtype)
    save(model, tmp_path / "m.h5")
    loaded = load(tmp_path / "m.h5")
    assert loaded.dtype == np.dtype(dtype)
    assert [type(layer) for layer in loaded] == [type(layer) for layer in model]
    for a, b in zip(model, loaded):
        assert a.describe() == b.describe() and a.dtype == b.dtype
        for name in ("stride", "padding", "dilation", "groups", "kernel_size"):
            assert getattr(a, name, None) == getattr(b, name, None)
        for name in ("weight", "bias", "window_weight"):
            wa, wb = getattr(a, name, None), getattr(b, name, None)
            assert (wa is None) == (wb is None), name
            if wa is not None:
                assert wb.dtype == wa.dtype and wb.tobytes() == wa.tobytes()  # bit for bit
                assert_array_equal(wb, wa)
    x = np.random.default_rng(1).normal(size=(5, *INPUT_SHAPE)).astype(dtype)
    assert_array_equal(loaded.forward(x), model.forward(x))
    assert_same_metadata(loaded.metadata, META)


def test_metadata_comes_back_in_normal_form(tmp_path: Path) -> None:
    model = Sequential([Flatten(), Dense(np.eye(3, 12))], {
        "input_shape": [3, 2, 2],                  # list -> tuple
        "class_names": ("a", "b", "c"),            # tuple -> list
        "input_scale": np.float32(0.5),            # numpy scalar -> float
        "input_offset": 0,                         # int -> float
        "input_low": [0, 0, 0],                    # per-channel ints -> float64 array
        "input_high": [1, 1, 1],
        "count": np.int32(3),                      # -> int
        "comment": "",                             # empty strings are fine
        "ids": [4, 5],                             # -> int64 array
        "weights": np.array([0.5, 0.25], dtype=np.float32),  # -> float64 array
    })
    save(model, tmp_path / "m.h5")
    assert_same_metadata(load(tmp_path / "m.h5").metadata, {
        "input_shape": (3, 2, 2),
        "class_names": ["a", "b", "c"],
        "input_scale": 0.5,
        "input_offset": 0.0,
        "input_low": np.zeros(3),
        "input_high": np.ones(3),
        "count": 3,
        "comment": "",
        "ids": np.array([4, 5], dtype=np.int64),
        "weights": np.array([0.5, 0.25]),
    })


def test_model_without_metadata_or_parameters_round_trips(tmp_path: Path) -> None:
    save(Sequential([ReLU(), Flatten()]).astype("float32"), tmp_path / "m.h5")
    loaded = load(tmp_path / "m.h5")
    assert [type(layer) for layer in loaded] == [ReLU, Flatten]
    assert loaded.dtype == np.float32 and loaded.metadata == {}


def test_file_layout_follows_the_specification(model_file: Path) -> None:
    with h5py.File(model_file, "r") as f:
        for name in ("format", "dtype", "dataset"):
            info = h5py.check_string_dtype(f.attrs.get_id(name).dtype)
            assert info is not None and info.encoding == "utf-8" and info.length is None  # variable-length UTF-8
        assert f.attrs["format"] == "lrp_ref" and f.attrs["dtype"] == "float64"
        # a chain of schema-1 layers is still written as schema 1 (SCHEMA_VERSION, 2, is what graphs need)
        assert f.attrs.get_id("schema_version").dtype == np.int64 and f.attrs["schema_version"] == 1
        assert f.attrs.get_id("class_names").shape == (3,)
        assert list(f) == ["layers"]
        assert list(f["layers"]) == [f"{i:03d}" for i in range(9)]
        types = [f["layers"][n].attrs["type"] for n in f["layers"]]
        assert types == ["Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AvgPool2d", "Flatten", "Dense", "ReLU", "Dense"]
        assert [int(f["layers"][n].attrs["index"]) for n in f["layers"]] == list(range(9))
        conv = f["layers/000"]
        assert conv.attrs["stride"].dtype == np.int64
        assert_array_equal(conv.attrs["stride"], [1, 2])
        assert_array_equal(conv.attrs["dilation"], [2, 1])
        assert_array_equal(conv.attrs["kernel_size"], [3, 3])
        assert conv.attrs["groups"] == 2 and conv["weight"].shape == (6, 2, 3, 3)
        assert_array_equal(f["layers/004/window_weight"][()], np.full((2, 2), 0.25))  # written even when default
        assert set(f["layers/006"]) == {"weight", "bias"} and set(f["layers/008"]) == {"weight"}
        assert f["layers/006/weight"].shape == (7, 24) and f["layers/006/weight"].dtype == np.float64


def test_group_names_widen_past_999_layers(tmp_path: Path) -> None:
    save(Sequential([ReLU()] * 1001), tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        names = list(f["layers"])
    assert names[0] == "0000" and names[-1] == "1000" and names == sorted(names)
    assert len(load(tmp_path / "m.h5")) == 1001


def test_save_overwrites_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    save(every_layer_model(), path)
    save(Sequential([Dense(np.ones((2, 3)))]), path)
    assert os.listdir(tmp_path) == ["m.h5"]
    assert_array_equal(load(path)[0].weight, np.ones((2, 3)))  # type: ignore[attr-defined]


def test_save_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    save(every_layer_model(), tmp_path / "a.h5")
    save(every_layer_model(), tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_a_file_written_by_hand_from_the_specification_loads(tmp_path: Path) -> None:
    """As another writer might do it: fixed-length strings, int32/uint8 integers, big-endian floats."""
    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_(b"lrp_ref")
        f.attrs["schema_version"] = np.int32(1)
        f.attrs["dtype"] = np.bytes_(b"float32")
        f.attrs["input_shape"] = np.array([2], dtype=np.int32)
        f.attrs["class_names"] = np.array([b"cat", b"dog"])
        dense = f.create_group("layers/000")
        dense.attrs.update({"type": np.bytes_(b"Dense"), "index": np.uint8(0)})
        dense["weight"] = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=">f4")
        dense["bias"] = np.array([0.5, -0.5], dtype="<f4")
        f.create_group("layers/001").attrs.update({"type": "ReLU", "index": 1})
    model = load(path)
    assert [type(layer) for layer in model] == [Dense, ReLU] and model.dtype == np.float32
    assert model.metadata == {"input_shape": (2,), "class_names": ["cat", "dog"]}
    assert_array_equal(model.forward(np.array([[1.0, -1.0], [1.0, 1.0]], dtype=np.float32)), [[0.0, 0.0], [3.5, 6.5]])


# ----------------------------------------------------------------------------- save refuses


class Square(ReLU):
    """A subclass the format cannot represent."""


@pytest.mark.parametrize(("metadata", "match"), [
    ({"notes": {"a": 1}}, "'notes' must be a str, an int, a float or a 1-D numeric array; got dict"),
    ({"flag": True}, "'flag' must be a str, an int, a float or a 1-D numeric array; got bool"),
    ({"grid": np.zeros((2, 2))}, "'grid' must be a non-empty 1-D numeric array; got an array of float64 with shape"),
    ({"tags": ["a", "b"]}, "'tags' must be a non-empty 1-D numeric array"),
    ({"empty": []}, "'empty' must be a non-empty 1-D"),
    ({"loss": float("nan")}, "'loss' must be a finite number"),
    ({"note": "a\0b"}, "'note' must be a string \\(UTF-8, no NUL character\\)"),
    ({"note": "\udcff"}, "'note' must be a string \\(UTF-8, no NUL character\\)"),
    ({"\udcff": 1}, "metadata key '\\\\udcff' must be a string \\(UTF-8"),
    ({"format": "x"}, "metadata key 'format' is not allowed"),
    ({"a/b": 1}, "metadata key 'a/b' is not allowed"),
    ({3: "x"}, "metadata key 3 is not allowed"),
    ({"seed": 1.5}, "'seed' must be an integer"),
    ({"dataset": 3}, "'dataset' must be a string"),
    ({"class_names": "abc"}, "'class_names' must be a non-empty list of strings"),
    ({"test_accuracy": 97.5}, "'test_accuracy' must be a fraction in \\[0, 1\\]; got 97.5"),
    ({"input_low": 0.0}, "'input_low' and 'input_high' go together"),
    ({"input_scale": 0.0, "input_offset": 0.0}, "'input_scale' must be non-zero"),
    ({"input_low": 1.0, "input_high": 0.0}, "input_low <= input_high"),
    ({"input_shape": (1, 5, 5)}, "input_shape \\(1, 5, 5\\) does not fit the layers: layer 0 \\(Conv2d\\)"),
    ({"input_shape": (4, 0, 12)}, "'input_shape' must hold positive sizes"),
    ({"input_shape": INPUT_SHAPE, "class_names": ["a", "b"]}, "2 class_names, but the output has shape \\(3,\\)"),
    ({"input_shape": INPUT_SHAPE, "input_scale": [1.0, 2.0], "input_offset": 0.0},
     "per-channel metadata must have one value per channel \\(4 = input_shape\\[0\\]\\); got lengths "
     "\\{'input_scale': 2\\}"),
    ({"input_low": [0.0, 0.0], "input_high": [1.0, 1.0, 1.0]}, "one value per channel \\(2\\); got lengths "),
])
def test_save_refuses_bad_metadata(tmp_path: Path, metadata: dict[Any, Any], match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        save(every_layer_model(metadata=metadata), tmp_path / "m.h5")
    assert not os.listdir(tmp_path)  # nothing written


def test_save_refuses_unknown_layer_classes(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="layer 1 is a Square; the format stores only Dense, Conv2d"):
        save(Sequential([Flatten(), Square()]), tmp_path / "m.h5")
    with pytest.raises(TypeError, match=r"expects an lrp_ref\.Sequential or Graph; got list"):
        save([ReLU()], tmp_path / "m.h5")  # type: ignore[arg-type]


def test_save_into_a_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No such directory for the model file: '.*nodir'"):
        save(Sequential([ReLU()]), tmp_path / "nodir" / "m.h5")


def test_failed_save_keeps_the_previous_file(model_file: Path) -> None:
    with pytest.raises(ModelFormatError):
        save(every_layer_model(metadata={"bad": None}), model_file)
    assert len(load(model_file)) == 9


# ----------------------------------------------------------------------------- load refuses: the file


def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.h5"):
        load(tmp_path / "nowhere.h5")


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a regular file"):
        load(tmp_path)


def test_load_refuses_a_file_that_is_not_hdf5(tmp_path: Path) -> None:
    (tmp_path / "m.h5").write_text("weights, honestly\n")
    with pytest.raises(ModelFormatError, match=r"m\.h5: not an HDF5 file"):
        load(tmp_path / "m.h5")


def test_load_refuses_a_truncated_file(model_file: Path) -> None:
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="HDF5 could not read the file"):
        load(model_file)


# ----------------------------------------------------------------------------- load refuses: the root


def _del_attr(name: str) -> Callable[[h5py.File], object]:
    return lambda f: f.attrs.__delitem__(name)


def _set_attr(name: str, value: Any) -> Callable[[h5py.File], object]:
    return lambda f: f.attrs.__setitem__(name, value)


@pytest.mark.parametrize(("edit", "match"), [
    (_del_attr("format"), "no root attribute 'format'; expected 'lrp_ref'"),
    (_set_attr("format", "keras"), "root attribute 'format' is str 'keras'; expected 'lrp_ref'"),
    (_del_attr("schema_version"), "no root attribute 'schema_version'"),
    (_set_attr("schema_version", 3), "written by a newer lrp_ref: schema 3, this version reads up to 2"),
    (_set_attr("schema_version", 0), "'schema_version' must be >= 1; got 0"),
    (_set_attr("schema_version", "1"), "'schema_version' must be an integer"),
    (_del_attr("dtype"), "no root attribute 'dtype'; expected 'float32' or 'float64'"),
    (_set_attr("dtype", "float16"), "'dtype' must be 'float32' or 'float64'; got 'float16'"),
    (lambda f: f.__delitem__("layers"), "group 'layers' is missing"),
    (lambda f: f.create_dataset("extra", data=[1.0]), "unexpected member 'extra'; allowed: 'layers'"),
    (lambda f: f["layers"].attrs.__setitem__("n", 9), "group 'layers': unexpected attribute 'n'; allowed: none"),
], ids=["no-format", "wrong-format", "no-schema", "newer-schema", "schema-0", "schema-str", "no-dtype",
        "bad-dtype", "no-layers", "extra-root-member", "layers-attribute"])
def test_load_refuses_bad_root(model_file: Path, edit: Callable[[h5py.File], object], match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        load(edited(model_file, edit))


@pytest.mark.parametrize(("edit", "match"), [
    (_set_attr("input_shape", np.array([4, 9, 9])), "input_shape \\(4, 9, 9\\) does not fit the layers"),
    (_set_attr("grid", np.zeros((2, 2))), "metadata 'grid' must be a non-empty 1-D numeric array"),
    (_set_attr("flag", True), "metadata 'flag' must be a str, an int, a float or a 1-D numeric array; got bool"),
    (_set_attr("class_names", np.array([1, 2, 3])), "'class_names'\\[0\\] must be a string"),
    (_del_attr("input_offset"), "'input_scale' and 'input_offset' go together"),
])
def test_load_refuses_bad_metadata(model_file: Path, edit: Callable[[h5py.File], object], match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        load(edited(model_file, edit))


# ----------------------------------------------------------------------------- load refuses: layer groups


def _rename(old: str, new: str) -> Callable[[h5py.File], object]:
    return lambda f: f.move(old, new)


def _layer_attr(layer: str, name: str, value: Any) -> Callable[[h5py.File], object]:
    return lambda f: f["layers/" + layer].attrs.__setitem__(name, value)


def _del_layer_attr(layer: str, name: str) -> Callable[[h5py.File], object]:
    return lambda f: f["layers/" + layer].attrs.__delitem__(name)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda f: f.__delitem__("layers/001"), "missing: layers/001; unexpected: layers/008"),
    (_rename("layers/008", "layers/8"), "named 000..008 \\(zero-padded to 3 digits\\); missing: layers/008; "
                                       "unexpected: layers/8"),
    (lambda f: [f.__delitem__(f"layers/{i:03d}") for i in range(9)], "group 'layers' is empty"),
    (lambda f: replace(f, "layers/001", [0.0]), "layers/001 must be a Group; found a Dataset"),
    (_layer_attr("003", "index", 4), "layers/003 \\(AvgPool2d\\): attribute 'index' is 4; expected 3"),
    (_del_layer_attr("001", "type"), "layers/001: missing attribute 'type'"),
    (_layer_attr("001", "type", "Dropout"), "layers/001: unknown layer type 'Dropout'; expected one of Dense, "
                                           "Conv2d, MaxPool2d, AvgPool2d, ReLU, Flatten"),
    (_layer_attr("001", "type", 5), "layers/001: attribute 'type' must be a string"),
    (_del_layer_attr("000", "stride"), "layers/000 \\(Conv2d\\): missing attribute 'stride'"),
    (_layer_attr("005", "start_dim", 1), "layers/005 \\(Flatten\\): unexpected attribute 'start_dim'"),
    (_layer_attr("002", "padding", [1, 1, 1]), "layers/002 \\(MaxPool2d\\): attribute 'padding' must be two integers"),
    (_layer_attr("002", "stride", [1.0, 1.0]), "attribute 'stride' must be two integers"),
    (_layer_attr("000", "groups", 4), "layers/000 \\(Conv2d\\): Conv2d groups must be a positive int dividing"),
    (_layer_attr("002", "stride", [0, 1]), "layers/002 \\(MaxPool2d\\): MaxPool2d stride must be >= 1"),
])
def test_load_refuses_bad_layer_groups(model_file: Path, edit: Callable[[h5py.File], object], match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        load(edited(model_file, edit))


# ----------------------------------------------------------------------------- load refuses: datasets


@pytest.mark.parametrize(("edit", "match"), [
    (lambda f: f.__delitem__("layers/006/weight"), "layers/006 \\(Dense\\): missing dataset 'weight'"),
    (lambda f: f.__delitem__("layers/003/window_weight"),
     "layers/003 \\(AvgPool2d\\): missing dataset 'window_weight'"),
    (lambda f: f.move("layers/006/bias", "layers/006/bias_"),
     "layers/006 \\(Dense\\): unexpected dataset 'bias_'; allowed: 'weight', 'bias'"),
    (lambda f: replace(f, "layers/006/bias", np.zeros(8)),
     "layers/006 \\(Dense\\): bias must have shape \\(7,\\) to match weight \\(7, 24\\); found \\(8,\\)"),
    (lambda f: replace(f, "layers/000/weight", np.zeros((6, 2, 3))),
     "layers/000 \\(Conv2d\\): weight must have 4 dimensions \\(out, in/groups, kh, kw\\); found shape \\(6, 2, 3\\)"),
    (lambda f: replace(f, "layers/006/weight", np.zeros(7)), "weight must have 2 dimensions \\(out, in\\)"),
    (lambda f: replace(f, "layers/000/weight", np.zeros((6, 2, 3, 5))),
     "weight shape \\(6, 2, 3, 5\\) does not match attribute kernel_size \\(3, 3\\)"),
    (lambda f: replace(f, "layers/003/window_weight", np.zeros((2, 2))),
     "window_weight must have shape kernel_size \\(2, 1\\); found \\(2, 2\\)"),
    (lambda f: replace(f, "layers/006/weight", np.zeros((0, 24))),
     "layers/006/weight: shape \\(0, 24\\) has no elements"),
    (lambda f: replace(f, "layers/006/weight", np.zeros((7, 24), dtype=np.int32)),
     "layers/006/weight: parameters must be float32 or float64; found dtype int32"),
    (lambda f: replace(f, "layers/006/weight", np.zeros((7, 24), dtype=np.float16)), "found dtype float16"),
    (lambda f: replace(f, "layers/006/bias", np.zeros(7, dtype=np.float32)),
     "layers/006/bias: dtype float32 differs from the model dtype float64 \\(root attribute 'dtype'\\)"),
    (lambda f: replace(f, "layers/006/weight", np.where(np.eye(7, 24) > 0, np.nan, 1.0)),
     "layers/006/weight: parameters must be finite; found 7 NaN and 0 inf value\\(s\\) among 168"),
    (lambda f: replace(f, "layers/000/bias", [1.0, 2.0, np.inf, 0.0, 0.0, 0.0]),
     "layers/000/bias: parameters must be finite; found 0 NaN and 1 inf"),
    (lambda f: replace(f, "layers/006/bias", h5py.SoftLink("/layers/000/bias")),
     "layers/006/bias is a SoftLink; only objects stored in the file itself are allowed"),
    (lambda f: replace(f, "layers/006/bias", h5py.ExternalLink("other.h5", "/bias")),
     "layers/006/bias is a ExternalLink"),
], ids=["no-weight", "no-window-weight", "unknown-dataset", "bias-shape", "conv-3d", "dense-1d", "kernel-size",
        "window-shape", "empty", "int-dtype", "float16", "dtype-mismatch", "nan", "inf", "soft-link", "external-link"])
def test_load_refuses_bad_datasets(model_file: Path, edit: Callable[[h5py.File], object], match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        load(edited(model_file, edit))


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load read a dataset it should have refused from its metadata")
    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)


def test_load_refuses_a_huge_declared_dataset_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "lrp_ref", "schema_version": 1, "dtype": "float64"})
        g = f.create_group("layers/000")
        g.attrs.update({"type": "Dense", "index": 0})
        g.create_dataset("weight", shape=(2**20, 2**20), dtype="f8")  # 8 TiB declared, nothing allocated
    assert path.stat().st_size < 100_000
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match=r"layers/000/weight: declares shape \(1048576, 1048576\) = "
                                               r"1099511627776 elements, more than max_elements=268435456"):
        load(path)


def test_load_refuses_files_over_max_bytes_before_reading(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match="the parameters declare 2528 bytes, more than max_bytes=2000"):
        load(model_file, max_bytes=2000)


def test_max_elements_is_configurable(model_file: Path) -> None:
    with pytest.raises(ModelFormatError, match="layers/000/weight: declares shape \\(6, 2, 3, 3\\) = 108 elements, "
                                               "more than max_elements=100"):
        load(model_file, max_elements=100)
    with pytest.raises(ModelFormatError, match="attribute 'class_names' declares 3 elements, more than 2"):
        load(model_file, max_elements=2)
    assert len(load(model_file, max_bytes=2528, max_elements=168)) == 9


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("path", [None, 123, 1.5, ["m.h5"], "", "a\0b", b"a\0b"], ids=repr)
def test_load_and_save_refuse_a_path_that_is_not_a_path(path: Any) -> None:
    for call in (lambda: load(path), lambda: save(Sequential([ReLU()]), path), lambda: check_file(path)):
        with pytest.raises(IOArgumentError, match=r"path must be a non-empty str, bytes or os\.PathLike"):
            call()
    assert issubclass(IOArgumentError, TypeError)  # what Path(None) raised before: except TypeError still works


def test_load_and_save_take_bytes_paths(model_file: Path, tmp_path: Path) -> None:
    save(load(os.fsencode(model_file)), os.fsencode(tmp_path / "copy.h5"))
    assert_same_metadata(load(tmp_path / "copy.h5").metadata, META)


@pytest.mark.parametrize(("limit", "value"), [("max_bytes", 0), ("max_elements", -1), ("max_layers", True),
                                              ("max_layers", 2.0), ("max_bytes", "1")])
def test_load_refuses_limits_that_are_not_positive_ints(model_file: Path, limit: str, value: Any) -> None:
    with pytest.raises(IOArgumentError, match=f"load: {limit} must be a positive int"):
        load(model_file, **{limit: value})


# ----------------------------------------------------------------------------- save(metadata=...)


def test_save_merges_explicit_metadata_over_the_models(tmp_path: Path) -> None:
    model = every_layer_model(metadata={"input_shape": INPUT_SHAPE, "note": "old", "seed": 1})
    save(model, tmp_path / "m.h5", metadata={"note": "new", "epochs": 3})
    assert load(tmp_path / "m.h5").metadata == {"input_shape": INPUT_SHAPE, "note": "new", "seed": 1, "epochs": 3}
    assert model.metadata == {"input_shape": INPUT_SHAPE, "note": "old", "seed": 1}  # the model is not touched


def test_save_metadata_adds_the_missing_input_shape(tmp_path: Path) -> None:
    save(every_layer_model(metadata={}), tmp_path / "m.h5", metadata={"input_shape": [4, 11, 12]})
    assert load(tmp_path / "m.h5").metadata == {"input_shape": INPUT_SHAPE}


@pytest.mark.parametrize(("metadata", "match"), [
    ({"input_shape": (4, 9, 9)}, "save: metadata input_shape \\(4, 9, 9\\) does not fit the layers"),
    ({"flag": True}, "save: metadata 'flag' must be a str, an int, a float or a 1-D numeric array; got bool"),
    ([("note", "x")], "save: metadata must be a mapping \\(e.g. a dict\\); got list"),
])
def test_save_checks_explicit_metadata_like_the_rest(tmp_path: Path, metadata: Any, match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        save(every_layer_model(metadata={}), tmp_path / "m.h5", metadata=metadata)
    assert not os.listdir(tmp_path)


def test_save_refuses_hyper_parameters_a_reader_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(LrpRefError, match=r"padding"):  # by save, or by Conv2d itself
        save(Sequential([Conv2d(np.ones((2, 1, 3, 3)), padding=2**20)]), tmp_path / "m.h5")
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- load refuses: limits, before reading


def relu_file(path: Path, n: int) -> Path:
    save(Sequential([ReLU()] * n), path)
    return path


def test_load_refuses_more_layers_than_max_layers_before_listing_them(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = relu_file(tmp_path / "m.h5", 20)
    assert len(load(path, max_layers=20)) == 20
    monkeypatch.setattr(lrp_ref.io, "_plan", lambda *args: pytest.fail("load looked at a layer group"))
    with pytest.raises(ModelFormatError, match=r"m\.h5: group 'layers' holds 20 members, more than max_layers=10; "
                                               r"pass a larger max_layers"):
        load(path, max_layers=10)


def test_load_refuses_too_many_root_attributes(model_file: Path) -> None:
    def many(f: h5py.File) -> None:
        for i in range(1025):
            f.attrs[f"m{i}"] = i
    with pytest.raises(ModelFormatError, match=r"model\.h5: root: \d+ attributes, more than the 1024 allowed"):
        load(edited(model_file, many))


def test_load_refuses_too_many_members_before_listing_them(model_file: Path) -> None:
    def many(f: h5py.File) -> None:
        for i in range(9):
            f[f"extra{i}"] = [1.0]
        for i in range(8):
            f["layers/006"].attrs[f"a{i}"] = i
    with pytest.raises(ModelFormatError, match=r"model\.h5: root: 10 members; expected at most 1"):
        load(edited(model_file, many))
    with h5py.File(model_file, "r+") as f:
        for i in range(9):
            del f[f"extra{i}"]
    with pytest.raises(ModelFormatError, match=r"layers/006: 10 attributes, more than the 9 allowed"):
        load(model_file)


@pytest.mark.parametrize(("value", "kind"), [
    (np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), "compound"),
    (np.array([np.arange(3), np.arange(5)], dtype=h5py.vlen_dtype(np.int64)), "variable-length sequence"),
    (np.void(b"\x01\x02\x03"), "opaque"),
    ("reference", "reference"),
])
def test_load_refuses_attribute_types_from_the_type_alone(model_file: Path, value: Any, kind: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with h5py.File(model_file, "r+") as f:
        f["layers/001"].attrs["type"] = f.ref if isinstance(value, str) else value
    read = h5py.AttributeManager.__getitem__

    def guarded(self: h5py.AttributeManager, name: str) -> Any:
        if name == "type" and h5py.h5i.get_name(self._id) == b"/layers/001":
            pytest.fail("load read the attribute's value")
        return read(self, name)
    monkeypatch.setattr(h5py.AttributeManager, "__getitem__", guarded)
    with pytest.raises(ModelFormatError, match=f"layers/001: attribute 'type' has an HDF5 {kind} type; expected an "
                                               "integer, a float or a string"):
        load(model_file)


def test_load_refuses_an_attribute_without_a_value(model_file: Path) -> None:
    with pytest.raises(ModelFormatError, match="root: attribute 'note' has no value \\(a null dataspace\\)"):
        load(edited(model_file, _set_attr("note", h5py.Empty("f8"))))


def _unwritten(name: str, shape: tuple[int, ...], **kwargs: Any) -> Callable[[h5py.File], object]:
    def edit(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, shape=shape, dtype="f8", **kwargs)
    return edit


@pytest.mark.parametrize(("edit", "match"), [
    (_unwritten("layers/006/weight", (7, 2**20)),
     "layers/006/weight: 58720256 bytes declared, more than the whole file holds \\(\\d+ bytes\\)"),
    (_unwritten("layers/006/weight", (7, 24)),
     "layers/006/weight: declares 1344 bytes but the file stores 0 of them \\(the data were never written\\)"),
    (_unwritten("layers/006/weight", (7, 24), chunks=(7, 12)),
     "layers/006/weight: stores 0 of its 2 chunks \\(the data were never written\\)"),
    (lambda f: replace(f, "layers/006/weight", h5py.Empty("f8")), "layers/006/weight: has no dataspace"),
], ids=["more-than-the-file", "contiguous-unwritten", "chunks-unwritten", "null-dataspace"])
def test_load_refuses_data_the_file_does_not_hold(model_file: Path, edit: Callable[[h5py.File], object], match: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    edited(model_file, edit)
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match=match):
        load(model_file)


def _stored(name: str, **kwargs: Any) -> Callable[[h5py.File], object]:
    def edit(f: h5py.File) -> None:
        data = f[name][()]
        del f[name]
        f.create_dataset(name, data=data, **kwargs)
    return edit


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"compression": "gzip"}, "filter 1 \\(deflate\\); lrp_ref model files are uncompressed \\(allowed filters: "
                              "shuffle, fletcher32\\); rewrite it uncompressed, e.g. with h5repack -f NONE"),
    ({"compression": "lzf"}, "filter 32000 \\(lzf\\)"),
    ({"scaleoffset": 3}, "filter 6 \\(scaleoffset\\)"),
])
def test_load_refuses_compressed_data(model_file: Path, kwargs: dict[str, Any], match: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    edited(model_file, _stored("layers/006/weight", **kwargs))
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match="layers/006/weight: is stored with the HDF5 " + match):
        load(model_file)


@pytest.mark.parametrize("kwargs", [{"chunks": (3, 5)}, {"shuffle": True, "chunks": True}, {"fletcher32": True},
                                    {"chunks": (20, 50), "maxshape": (None, None)}], ids=str)
def test_chunked_and_checksummed_data_load_exactly(model_file: Path, kwargs: dict[str, Any]) -> None:
    edited(model_file, _stored("layers/006/weight", **kwargs))
    assert_array_equal(load(model_file)[6].weight, every_layer_model()[6].weight)  # type: ignore[attr-defined]


def test_load_refuses_parameters_that_together_declare_more_than_the_file(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Hard links let 40 layers share one 80 kB weight: 3.2 MB of parameters in a file of about 100 kB."""
    path = tmp_path / "m.h5"
    save(Sequential([Dense(np.eye(100))] + [Dense(np.eye(1))] * 39), path)
    with h5py.File(path, "r+") as f:
        for i in range(1, 40):
            del f[f"layers/{i:03d}/weight"]
            f[f"layers/{i:03d}/weight"] = f["layers/000/weight"]  # a second hard link to the same data
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match=r"m\.h5: the parameters together: 3200000 bytes declared, more "
                                               r"than the whole file holds \(\d{5,6} bytes\)"):
        load(path)


def test_load_refuses_too_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w", userblock_size=2**20) as f:  # a large file, so that the chunk count is what fails
        write_model(f, Sequential([Flatten(), Dense(np.ones((300, 300)))]))
    edited(path, _unwritten("layers/001/weight", (300, 300), chunks=(1, 1)))
    _no_reads(monkeypatch)
    with pytest.raises(ModelFormatError, match=r"layers/001/weight: shape \(300, 300\) in chunks of \(1, 1\) makes "
                                               r"90000 chunks, more than 65536"):
        load(path)


@pytest.mark.parametrize(("edit", "match"), [
    (_layer_attr("000", "padding", np.array([2**62, 2**62])),
     r"layers/000 \(Conv2d\): attribute 'padding' is \(4611686018427387904, 4611686018427387904\); each value must be "
     r"at most MAX_HYPERPARAMETER=65536 in size"),
    (_layer_attr("002", "stride", np.array([1, 2**40])), r"layers/002 \(MaxPool2d\): attribute 'stride' is "
                                                         r"\(1, 1099511627776\)"),
    (_layer_attr("000", "groups", -(2**63)), r"attribute 'groups' is -9223372036854775808; each value must be"),
    (_set_attr("input_shape", np.array([2**40, 2**40, 2**40])), r"metadata 'input_shape' \(1099511627776, "
     r"1099511627776, 1099511627776\) has 1329227995784915872903807060280344576 elements per sample, more than "
     r"MAX_SAMPLE_ELEMENTS=2147483648"),
    (_layer_attr("000", "padding", np.array([60000, 60000])), r"metadata input_shape \(4, 11, 12\) does not fit the "
     r"layers: layer 0 \(Conv2d\).*padded by padding=\(60000, 60000\) would have shape \(4, 120011, 120012\) = "
     r"5.76e\+10 elements per sample, beyond the limit of 2147483648"),
], ids=["padding-2**62", "stride-2**40", "groups-min-int64", "input-shape-2**120", "activation-over-2**31"])
def test_load_refuses_sizes_that_would_overflow_later(model_file: Path, edit: Callable[[h5py.File], object],
                                                      match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        load(edited(model_file, edit))


# ----------------------------------------------------------------------------- load: whatever h5py raises


def test_load_names_the_object_libhdf5_failed_on(model_file: Path) -> None:
    data = bytearray(model_file.read_bytes())
    at = data.index(b"SNOD", data.index(b"SNOD") + 1)  # the symbol table node of a layer group
    data[at:at + 4] = b"XXXX"
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=r"model\.h5: HDF5 could not read the file at .+: \w+Error: .*signature"):
        load(model_file)


@pytest.mark.parametrize("error", [KeyError("k"), RuntimeError("r"), TypeError("t"), ValueError("v"), OSError("o"),
                                   MemoryError(), SystemError("s"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "u"),
                                   OverflowError("big"), IndexError("i")], ids=lambda e: type(e).__name__)
def test_every_error_h5py_raises_becomes_a_model_format_error(model_file: Path, error: Exception,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error
    monkeypatch.setattr(h5py.Dataset, "__getitem__", fail)
    with pytest.raises(ModelFormatError, match=rf"model\.h5: HDF5 could not read the file at layers/000/\w+: "
                                               rf"{type(error).__name__}") as caught:
        load(model_file)
    assert caught.value.__cause__ is error


def test_read_model_is_guarded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        write_model(f.create_group("model"), every_layer_model())
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with h5py.File(tmp_path / "v.h5", "r") as f, pytest.raises(ModelFormatError, match=r"v\.h5:/model: HDF5 could "
                                                                                       r"not read .*boom"):
        read_model(f["model"])


# ----------------------------------------------------------------------------- untrusted mode and check_file


def test_untrusted_load_gives_the_same_model(model_file: Path) -> None:
    trusted, untrusted = load(model_file), load(model_file, untrusted=True)
    assert_same_metadata(untrusted.metadata, trusted.metadata)
    for a, b in zip(trusted, untrusted):
        for name in ("weight", "bias", "window_weight"):
            if getattr(a, name, None) is not None:
                assert getattr(a, name).tobytes() == getattr(b, name).tobytes()


def test_check_file_reports_in_one_line(model_file: Path) -> None:
    assert check_file(model_file) == f"{model_file}: ok: 9 layers, 310 float64 parameters, input_shape (4, 11, 12)"
    with pytest.raises(ModelFormatError, match=r"model\.h5: .*attribute 'padding' is \(4611686018427387904"):
        check_file(edited(model_file, _layer_attr("000", "padding", np.array([2**62, 2**62]))))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        check_file(model_file.parent / "nowhere.h5")
    with pytest.raises(IOArgumentError, match="timeout must be a positive number"):
        check_file(model_file, timeout=0)
    with pytest.raises(IOArgumentError, match="memory must be a positive int"):
        check_file(model_file, memory=-1)


def _child_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Make the validating child run ``body`` instead of loading (a sitecustomize on its PYTHONPATH)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, time\nimport lrp_ref._sandbox, lrp_ref.io\n"
        f"def fake(*args, **kwargs):\n    {body}\n"
        "lrp_ref.io.load = fake\n")
    monkeypatch.setenv("PYTHONPATH", str(hook))


@pytest.mark.parametrize(("body", "match"), [
    ("os.kill(os.getpid(), signal.SIGSEGV)", "died of signal SIGSEGV \\(a crash inside the HDF5 library"),
    ("os.abort()", "died of signal SIGABRT"),
    ("raise MemoryError()", "MemoryError \\(the reading process was limited to 1073741824 bytes of address space\\)"),
    ("bytearray(2**31)", "MemoryError \\(the reading process was limited to 1073741824 bytes"),
    ("os._exit(7)", "exited with status 7 without a report"),
], ids=["segfault", "abort", "memory-error", "over-the-memory-limit", "silent-exit"])
def test_check_file_reports_how_the_child_failed(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 body: str, match: str) -> None:
    _child_hook(tmp_path, monkeypatch, body)
    with pytest.raises(ModelFormatError, match=rf"model\.h5: .*{match}"):
        check_file(model_file, memory=2**30)


def test_untrusted_load_survives_a_crash_and_a_hang_of_the_child(model_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _child_hook(tmp_path, monkeypatch, "os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ModelFormatError, match=r"model\.h5: the process reading the file died of signal SIGSEGV"):
        load(model_file, untrusted=True)
    (tmp_path / "again").mkdir()
    _child_hook(tmp_path / "again", monkeypatch, "time.sleep(60)")
    with pytest.raises(ModelFormatError, match=r"model\.h5: reading the file did not finish within 2 s"):
        check_file(model_file, timeout=2)



def test_untrusted_mode_contains_a_real_endless_loop_inside_libhdf5(tmp_path: Path) -> None:
    """HDF5 2.0.0 loops forever in ``H5HG__cache_heap_deserialize`` on a global-heap object of index 0 and size 0.

    The strings of a model file live in that heap; a plain ``load`` would never return.
    """
    path = tmp_path / "heap.h5"
    save(Sequential([ReLU()]), path)
    data = bytearray(path.read_bytes())
    first = data.index(b"GCOL") + 16  # the collection's header: signature, version, reserved, size
    data[first:first + 16] = bytes(16)  # the first object's header: index 0 (free space), size 0
    path.write_bytes(bytes(data))
    start = time.monotonic()
    with pytest.raises(ModelFormatError, match=r"heap\.h5: "):  # a timeout here; a plain refusal once HDF5 is fixed
        check_file(path, timeout=3)
    assert time.monotonic() - start < 10


def test_load_refuses_from_its_type_alone_an_attribute_whose_value_crashes_libhdf5(tmp_path: Path) -> None:
    """One bit flipped in a string attribute's datatype (found by the fuzzer in a shipped model).

    A variable-length string is an HDF5 VLEN type of kind 1; kind 11 is neither a string nor a
    sequence, and reading such a value kills the process with SIGSEGV inside h5py/libhdf5 (h5py 3.16,
    HDF5 2.0.0). ``load`` refuses the type before it reads anything, so nothing crashes.
    """
    path = tmp_path / "vlen.h5"
    save(Sequential([ReLU()]), path)
    data = bytearray(path.read_bytes())
    string_type = b"\x19\x01\x01\x00"  # version 1, class 9 (VLEN); kind 1 (string), NUL-terminated; UTF-8
    at = data.index(string_type, data.index(b"format"))  # the type of the root attribute 'format'
    data[at + 1] = 0x0B
    path.write_bytes(bytes(data))
    match = r"vlen\.h5: root: attribute 'format' has an HDF5 variable-length sequence type; expected an integer"
    with pytest.raises(ModelFormatError, match=match):
        load(path)
    with pytest.raises(ModelFormatError, match=match):
        check_file(path)
    plain = subprocess.run([sys.executable, "-c", f"import h5py; h5py.File({str(path)!r})['/'].attrs['format']"],
                           capture_output=True, check=False)
    assert plain.returncode != 0  # what reading the value does (-11, SIGSEGV, with the versions above)

# ----------------------------------------------------------------------------- the command line


def test_cli_check_file_prints_one_line_per_file(model_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.h5"
    save(every_layer_model(), bad)
    edited(bad, _layer_attr("000", "padding", np.array([2**62, 2**62])))
    (tmp_path / "text.h5").write_text("not a model\n")
    assert cli.main(["check-file", str(model_file)]) == 0
    assert capsys.readouterr().out == f"{model_file}: ok: 9 layers, 310 float64 parameters, input_shape (4, 11, 12)\n"
    paths = [model_file, bad, tmp_path / "nowhere.h5", tmp_path / "text.h5"]
    assert cli.main(["check-file", *map(str, paths), "--timeout", "20"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [[str(paths[0]), "ok"]] + [[str(p), "refused"]
                                                                                      for p in paths[1:]]
    assert lines[1].endswith("layers/000 (Conv2d): attribute 'padding' is (4611686018427387904, 4611686018427387904); "
                             "each value must be at most MAX_HYPERPARAMETER=65536 in size")
    assert lines[2] == f"{paths[2]}: refused: no such file"
    assert lines[3] == f"{paths[3]}: refused: not an HDF5 file (no HDF5 signature); expected an lrp_ref HDF5 model"


def test_cli_says_why_an_input_does_not_fit_a_model_without_input_shape(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    model = load(root / "weights" / "mnist_cnn.h5")
    save(Sequential(model.layers, {k: v for k, v in model.metadata.items() if k != "input_shape"}), tmp_path / "m.h5")
    np.save(tmp_path / "odd.npy", np.full((5, 7), 100, dtype=np.uint8))
    args = ["explain", "--model", str(tmp_path / "m.h5"), "--input", str(tmp_path / "odd.npy"), "--rule", "epsilon",
            "--out", str(tmp_path / "out")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "has shape (5, 7), which the model accepts neither as one sample nor as a batch" in err
    assert err.rstrip().endswith("save the model with save(model, path, metadata={'input_shape': ...})")
