"""HDF5 schema 2: graphs, batch norm, adaptive pooling, merges and four-sided padding round-trip; schema 1 stays.

A model that schema 1 can hold is still written as schema 1 (the shipped files and golden vectors
keep their bytes); anything else is written as schema 2, whose layer groups add ``name`` and
``inputs``.  Every schema 2 refusal is a ModelFormatError naming the file and the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref
from lrp_ref import composites as C
from lrp_ref.errors import ModelFormatError
from lrp_ref.graph import Graph, Sequential
from lrp_ref.io import load, save
from lrp_ref.layers import AdaptiveAvgPool2d, BatchNorm1d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU
from lrp_ref.merge import Add, Concat


def graph_model(seed: int = 0) -> Graph:
    """A residual block with batch norms, a concatenation, adaptive and global pooling, batch norm 1d."""
    rng = np.random.default_rng(seed)

    def conv(c_in: int, c_out: int, **kw: Any) -> Conv2d:
        return Conv2d(rng.normal(0, 0.3, (c_out, c_in, 3, 3)), rng.normal(0, 0.1, c_out), **kw)

    def bn2(c: int) -> lrp_ref.BatchNorm2d:
        return lrp_ref.BatchNorm2d(rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                                   rng.uniform(0.5, 2, c), eps=1e-3)

    return Graph([
        ("stem", conv(2, 4, padding=(0, 1, 0, 1), stride=2), "input"), ("stem_bn", bn2(4), "stem"),
        ("stem_relu", ReLU(), "stem_bn"),
        ("a", conv(4, 4, padding=1), "stem_relu"), ("a_bn", bn2(4), "a"),
        ("sum", Add(), ("a_bn", "stem_relu")), ("relu", ReLU(), "sum"),
        ("side", conv(4, 2, padding=1), "relu"),
        ("cat", Concat(), ("relu", "side")),
        ("pool", AdaptiveAvgPool2d((3, 2)), "cat"), ("gap", GlobalAvgPool2d(), "pool"), ("flat", Flatten(), "gap"),
        ("bn1d", BatchNorm1d(rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.1, 6), np.zeros(6), np.ones(6)), "flat"),
        ("fc", Dense(rng.normal(size=(3, 6)), rng.normal(size=3)), "bn1d"),
    ], {"input_shape": (2, 8, 8), "class_names": ["a", "b", "c"]})


def test_a_graph_round_trips_exactly(tmp_path: Path) -> None:
    g = graph_model()
    save(g, tmp_path / "g.h5")
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert f.attrs["schema_version"] == 2
        assert f["layers/005"].attrs["name"] == "sum"
        assert list(f["layers/005"].attrs["inputs"]) == ["a_bn", "stem_relu"]
    back = load(tmp_path / "g.h5")
    assert type(back) is Graph
    assert [(n.name, type(n.layer), n.inputs) for n in back.nodes] == [
        (n.name, type(n.layer), n.inputs) for n in g.nodes]
    x = np.random.default_rng(1).uniform(-1, 1, (2, 2, 8, 8))
    assert_array_equal(back.forward(x), g.forward(x))
    rules = C.epsilon_gamma_box(-1.0, 1.0)
    assert_array_equal(lrp_ref.explain(back, x, rules).relevance, lrp_ref.explain(g, x, rules).relevance)
    assert back.metadata["class_names"] == ["a", "b", "c"]


def test_saving_is_deterministic(tmp_path: Path) -> None:
    save(graph_model(), tmp_path / "a.h5")
    save(graph_model(), tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_a_chain_that_schema_1_holds_is_written_as_schema_1(tmp_path: Path) -> None:
    model = Sequential([Conv2d(np.ones((2, 1, 3, 3)), padding=1), ReLU(), MaxPool2d(2), Flatten()])
    save(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["schema_version"] == 1 and "name" not in f["layers/000"].attrs
    assert type(load(tmp_path / "m.h5")) is Sequential


def test_a_chain_needing_schema_2_loads_as_a_sequential(tmp_path: Path) -> None:
    model = Sequential([Conv2d(np.ones((2, 1, 3, 3)), padding=(0, 1, 0, 1), stride=2), ReLU(), Flatten()])
    save(model, tmp_path / "m.h5")
    back = load(tmp_path / "m.h5")
    assert type(back) is Sequential and back[0].padding == (0, 1, 0, 1)


def edit(path: Path, change: Callable[[h5py.File], object]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _attr(group: str, name: str, value: Any) -> Callable[[h5py.File], object]:
    def change(f: h5py.File) -> None:
        if name in f[group].attrs:
            del f[group].attrs[name]
        f[group].attrs.create(name, value, dtype=h5py.string_dtype("utf-8") if isinstance(value, (str, list))
                              else None)
    return change


@pytest.mark.parametrize(("change", "match"), [
    (_attr("layers/005", "inputs", ["a_bn", "nowhere"]), r"node 'sum' reads 'nowhere', which is not an earlier node"),
    (_attr("layers/003", "name", "stem"), "names must be unique; 'stem' appears twice"),
    (_attr("layers/005", "inputs", ["a_bn"]), r"takes 2 input\(s\); got 1"),
    (_attr("layers/000", "padding", np.arange(3)), r"layers/000 \(Conv2d\): attribute 'padding' must be two integers "
                                                   r"\(shape \(2,\)\) or four"),
    (_attr("layers/001", "eps", "small"), r"layers/001 \(BatchNorm2d\): attribute 'eps'"),
    (lambda f: f["layers/005"].attrs.__delitem__("inputs"), r"layers/005 \(Add\): missing attribute"),
    (_attr("/", "schema_version", np.int64(1)), r"layers/000 \(Conv2d\): unexpected attribute 'inputs', 'name'"),
])
def test_schema_2_refusals_name_file_and_layer(tmp_path: Path, change: Callable[[h5py.File], object],
                                               match: str) -> None:
    path = tmp_path / "g.h5"
    save(graph_model(), path)
    with pytest.raises(ModelFormatError, match=match) as info:
        load(edit(path, change))
    assert str(path) in str(info.value)


def test_schema_1_refuses_schema_2_layer_types(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    save(Sequential([lrp_ref.BatchNorm2d(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))]), path)
    edit(path, _attr("/", "schema_version", np.int64(1)))
    with h5py.File(path, "r+") as f:
        for name in ("name", "inputs"):
            del f["layers/000"].attrs[name]
    with pytest.raises(ModelFormatError, match=r"layer type 'BatchNorm2d' needs schema 2; the file says schema 1"):
        load(path)


def test_untrusted_load_and_check_file_read_graphs(tmp_path: Path) -> None:
    path = tmp_path / "g.h5"
    save(graph_model(), path)
    assert type(load(path, untrusted=True)) is Graph
    assert lrp_ref.io.check_file(path).startswith(f"{path}: ok")


def test_concat_and_add_survive_the_round_trip_with_their_arity(tmp_path: Path) -> None:
    g = Graph([("a", ReLU(), "input"), ("b", ReLU(), "input"), ("c", ReLU(), "input"),
               ("s", Add(3), ("a", "b", "c")), ("k", Concat(2), ("s", "a"))])
    save(g, tmp_path / "g.h5")
    back = load(tmp_path / "g.h5")
    assert back[3].n_inputs == 3 and back[4].n_inputs == 2
