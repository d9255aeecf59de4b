"""An iNNvestigate user's Keras file: from_keras + profile="innvestigate" reproduces iNNvestigate.

tests/fixtures/keras/innvestigate/<net>.h5 are the Keras models on which iNNvestigate 2.1.2
(TensorFlow CPU 2.14.1, float64) recorded every LRP analyzer into tests/golden/innvestigate,
saved as an iNNvestigate user saves them, ``model.save("<net>.h5")`` (tf.keras's legacy HDF5),
by ``scripts/record_innvestigate.py --keras-files``.  Here, without TensorFlow, each file is
imported with :func:`lrp_ref.from_keras` and every recorded analyzer is written the way an
lrp_ref user writes it (tests/crosscheck_innvestigate/analyzers.py) and explained under
``profile="innvestigate"``: agreement to 1e-10 of max|R| (atol = 1e-10 * max|R|, rtol = 0).
The live version is tests/crosscheck_innvestigate/test_keras_files.py.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import io

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "crosscheck_innvestigate"))
import keras_nets  # noqa: E402
from analyzers import ANALYZERS, lrp_ref_rules  # noqa: E402

GOLDEN = HERE / "golden" / "innvestigate"
KERAS_FILES = HERE / "fixtures" / "keras" / "innvestigate"
RTOL = 1e-10


@functools.cache
def recorded(net: str) -> dict[str, Any]:
    with h5py.File(GOLDEN / f"{net}.h5", "r") as f:
        return {
            "model": io.read_model(f["model"]),
            "inputs": {k: np.asarray(d) for k, d in f["inputs"].items()},
            "cases": {(kind, key): np.asarray(d) for kind, g in f["cases"].items() for key, d in g.items()},
        }


@functools.cache
def imported(net: str) -> lrp_ref.Sequential | lrp_ref.Graph:
    return lrp_ref.from_keras(KERAS_FILES / f"{net}.h5")


def test_one_keras_file_per_recorded_network() -> None:
    assert sorted(p.stem for p in KERAS_FILES.glob("*.h5")) == sorted(keras_nets.NETS)
    with h5py.File(KERAS_FILES / "cnn_max.h5", "r") as f:
        assert f.attrs["backend"] == "tensorflow" and str(f.attrs["keras_version"]).startswith("2.14")


@pytest.mark.parametrize("net", keras_nets.NETS)
def test_imported_file_is_the_recorded_network(net: str) -> None:
    """The same layers and the same function as the network iNNvestigate explained."""
    ours, theirs = imported(net), recorded(net)["model"]
    assert isinstance(ours, lrp_ref.Sequential)
    assert [layer.describe() for layer in ours] == [layer.describe() for layer in theirs]
    for x in recorded(net)["inputs"].values():
        y = theirs.forward(x)
        assert_allclose(ours.forward(x), y, rtol=0, atol=1e-12 * np.abs(y).max())


CASES = [(net, kind, key) for net in keras_nets.NETS for kind in keras_nets.INPUTS for key in ANALYZERS]


@pytest.mark.parametrize("net, kind, key", CASES, ids=[f"{n}/{k}/{a}" for n, k, a in CASES])
def test_profile_on_the_imported_file_reproduces_innvestigate(net: str, kind: str, key: str) -> None:
    r = recorded(net)
    theirs = r["cases"][(kind, key)]
    model = imported(net)
    ours = lrp_ref.explain(model, r["inputs"][kind], lrp_ref_rules(key, model), profile="innvestigate").relevance
    assert_allclose(ours, theirs, rtol=0, atol=RTOL * np.abs(theirs).max())
