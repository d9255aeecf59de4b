"""iNNvestigate's recorded numbers: the "innvestigate" profile reproduces them, without TensorFlow.

tests/golden/innvestigate/*.h5 are written by scripts/record_innvestigate.py (``make
innvestigate-peer``), which runs iNNvestigate 2.1.2 on TensorFlow CPU 2.14.1 in float64: every
LRP analyzer on the networks and inputs of the live cross-check (tests/crosscheck_innvestigate,
run by ``make crosscheck``).  Here each recorded analyzer is written the way an lrp_ref user
writes it (tests/crosscheck_innvestigate/analyzers.py) and explained under
``profile="innvestigate"``; agreement to 1e-10 of max|R| (numpy.testing.assert_allclose with
atol = 1e-10 * max|R|, rtol = 0).
"""

from __future__ import annotations

import functools
import json
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
FILES = sorted(GOLDEN.glob("*.h5"))
RTOL = 1e-10


@functools.cache
def read(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {
            "attrs": dict(f.attrs),
            "model": io.read_model(f["model"]),
            "inputs": {k: np.asarray(d) for k, d in f["inputs"].items()},
            "cases": {(kind, key): (np.asarray(d), dict(d.attrs))
                      for kind, g in f["cases"].items() for key, d in g.items()},
        }


CASES = [(p, kind, key) for p in FILES for (kind, key) in read(p)["cases"]]


def test_every_analyzer_is_recorded_on_every_network() -> None:
    assert [p.stem for p in FILES] == sorted(keras_nets.NETS)
    for p in FILES:
        assert read(p)["attrs"]["innvestigate_version"] == "2.1.2"
        recorded = {key for (_, key) in read(p)["cases"]}
        assert recorded == set(ANALYZERS), p.name


@pytest.mark.parametrize("path, kind, key", CASES, ids=[f"{p.stem}/{kind}/{key}" for p, kind, key in CASES])
def test_profile_reproduces_innvestigate(path: Path, kind: str, key: str) -> None:
    r = read(path)
    theirs, attrs = r["cases"][(kind, key)]
    assert attrs["analyzer"] == ANALYZERS[key][0] and json.loads(attrs["kwargs"]) == json.loads(
        json.dumps(ANALYZERS[key][1]))
    model, x = r["model"], r["inputs"][kind]
    ours = lrp_ref.explain(model, x, lrp_ref_rules(key, model), profile="innvestigate").relevance
    assert_allclose(ours, theirs, rtol=0, atol=RTOL * np.abs(theirs).max())


@pytest.mark.parametrize("key", ["z_plus", "flat", "w_square"])
def test_the_fixes_are_what_makes_the_difference(key: str) -> None:
    """Without iNNvestigate's real z+ bias and average-pooling rule, the recorded numbers are missed."""
    r = read(GOLDEN / "cnn_avg.h5")
    theirs, _ = r["cases"][("mixed", key)]
    model, x = r["model"], r["inputs"]["mixed"]
    # the profile as it was before: full bias for z+, the analyzer's rule applied to average pooling too
    old = lrp_ref.profiles.Profile(
        "innvestigate-old", "", defaults={"epsilon": 1e-7, "stabilizer": 1e-7, "form": "zeros",
                                          "Epsilon.form": "sign", "bias": "both", "ties": "first"},
        maxpool=lrp_ref.rules.WinnerTakesAll(ties="first"))
    stale = lrp_ref.explain(model, x, lrp_ref_rules(key, model), profile=old).relevance
    assert np.abs(stale - theirs).max() > 1e-3 * np.abs(theirs).max()
