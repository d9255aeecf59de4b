"""An iNNvestigate user's saved model, live: from_keras of ``model.save("net.h5")`` against iNNvestigate 2.1.2.

The Keras networks of the iNNvestigate cross-check (test_innvestigate.py) are saved as an
iNNvestigate user saves them: tf.keras's legacy HDF5 (TensorFlow runs in graph mode for
iNNvestigate, where tf.keras 2.14 cannot write the ``.keras`` zip).  Each file is imported with
``lrp_ref.from_keras``, without the lrp_ref model it was built from: it computes Keras's output
(float64, 1e-12) and, explained under ``profile="innvestigate"`` with the rules a user writes for
each analyzer, reproduces every analyzer to 1e-10 of max|R|.  The analyzers are test_innvestigate's
(built once per session).  ``make test`` checks the committed files against the recorded numbers
(tests/test_keras_innvestigate.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("innvestigate")

import keras_nets
from analyzers import ANALYZERS, lrp_ref_rules
from test_innvestigate import _analyzer, _net

import lrp_ref
from lrp_ref.testing import assert_relevance_close

RTOL = 1e-10


@functools.cache
def _imported(kind: str, folder: Path) -> lrp_ref.Sequential | lrp_ref.Graph:
    _, _, net = _net(kind)
    path = folder / f"{kind}.h5"
    net.save(path)
    return lrp_ref.from_keras(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keras_files")


@pytest.mark.parametrize("kind", keras_nets.NETS)
def test_saved_file_computes_the_keras_output(kind: str, folder: Path) -> None:
    _, shape, net = _net(kind)
    model = _imported(kind, folder)
    x = keras_nets.random_input(shape, "mixed", n=3, seed=11)
    y = net.predict(keras_nets.to_nhwc(x), verbose=0)
    np.testing.assert_allclose(model.forward(x), y, rtol=0, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("input_kind", keras_nets.INPUTS)
@pytest.mark.parametrize("kind", keras_nets.NETS)
@pytest.mark.parametrize("key", list(ANALYZERS))
def test_profile_on_the_saved_file_reproduces_the_analyzer(key: str, kind: str, input_kind: str, folder: Path) -> None:
    original, shape, _ = _net(kind)
    model = _imported(kind, folder)
    x = keras_nets.explained_inputs(kind, shape, input_kind, original)
    theirs = keras_nets.to_nchw(_analyzer(kind, key).analyze(keras_nets.to_nhwc(x)))
    ours = lrp_ref.explain(model, x, lrp_ref_rules(key, model), profile="innvestigate").relevance
    assert_relevance_close(theirs, ours, rtol=RTOL)
