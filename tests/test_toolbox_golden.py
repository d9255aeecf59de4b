"""lrp_toolbox's recorded numbers: the "toolbox" profile reproduces them, without the toolbox.

tests/golden/toolbox/*.h5 are written by scripts/record_toolbox.py (``make toolbox-peer
TOOLBOX=...``), which runs the toolbox's own python/modules at the recorded commit.  One file
per network and input range::

    /                 attributes: format, name, description, library, commit, source,
                      profile ("toolbox"), start, schema_version
    /model            the network in lrp_ref's layout (lrp_ref.io.write_model)
    /input (N, ...)   NCHW;  /target (N,) the arg-max;  /output (N, n_out) the toolbox's forward
    /cases/<rule>-<path>   the toolbox's input relevance (NCHW), attributes rule_spec (lrp_ref.catalog
                      syntax), path ("fast": nn.lrp; "slow": each module's *_slow variant), call (the
                      exact toolbox call) and known_bug ("" or the name of a toolbox bug below)

Known toolbox bugs (docs/profiles.md, "Known peer bugs"), which lrp_ref does not reproduce:

* ``sumpool-alphabeta-fast``: SumPool._alphabeta_lrp multiplies R in twice in its beta term;
  there lrp_ref agrees with the toolbox's own slow path.
* ``alphabeta-slow-stabilisers``: the slow alpha-beta of Linear and Convolution has no
  stabiliser (the fast one +1e-16 and, in effect, -2e-16, which the profile follows), so a zero
  denominator gives NaN (Linear) or drops a whole output position's relevance (Convolution),
  and a denominator below 1e-6 differs visibly; there lrp_ref agrees with the toolbox's fast path.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import catalog, io
from lrp_ref import layers as L

GOLDEN = Path(__file__).resolve().parent / "golden" / "toolbox"
FILES = sorted(GOLDEN.glob("*.h5"))
RTOL = 1e-10  # of max|R|: float64, the target
SUMPOOL_ALPHABETA = "sumpool-alphabeta-fast"
SLOW_ALPHABETA = "alphabeta-slow-stabilisers"


@functools.cache
def read(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {
            "attrs": {k: (v if isinstance(v, (int, np.integer)) else str(v)) for k, v in f.attrs.items()},
            "model": io.read_model(f["model"]),
            "x": np.asarray(f["input"]),
            "target": np.asarray(f["target"]),
            "output": np.asarray(f["output"]),
            "cases": {k: (np.asarray(d), {a: str(v) for a, v in d.attrs.items()}) for k, d in f["cases"].items()},
        }


@functools.cache
def oracle(path: Path, spec: str) -> np.ndarray:
    r = read(path)
    return lrp_ref.explain(r["model"], r["x"], catalog.from_spec(spec), target=r["target"], profile="toolbox").relevance


def all_cases() -> list[tuple[Path, str]]:
    return [(p, k) for p in FILES for k in read(p)["cases"]]


def bug_cases(bug: str) -> list[tuple[Path, str]]:
    """The recorded cases a toolbox bug touches ("": those it does not)."""
    return [(p, k) for p, k in all_cases() if read(p)["cases"][k][1]["known_bug"] == bug]


def ids(cases: list[tuple[Path, str]]) -> list[str]:
    return [f"{p.stem}/{k}" for p, k in cases]


def close(actual: np.ndarray, desired: np.ndarray, what: str) -> None:
    """|actual - desired| <= 1e-10 * max|desired| element-wise."""
    assert np.all(np.isfinite(desired)), f"{what}: the recorded relevance is not finite"
    assert_allclose(actual, desired, rtol=0, atol=RTOL * float(np.max(np.abs(desired))), err_msg=what)


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_the_recorded_files_are_there_and_small():
    assert len(FILES) >= 16, "tests/golden/toolbox is incomplete: run `make toolbox-peer TOOLBOX=...`"
    assert sum(p.stat().st_size for p in FILES) < 1.5e6
    commits = {read(p)["attrs"]["commit"] for p in FILES}
    assert len(commits) == 1 and len(next(iter(commits))) == 40
    assert {read(p)["attrs"]["format"] for p in FILES} == {"lrp_ref-toolbox-peer"}


def test_the_recordings_cover_every_rule_path_and_layer_kind():
    rules, kinds, bugs = set(), set(), set()
    for path in FILES:
        r = read(path)
        for _name, (_, attrs) in r["cases"].items():
            rules.add((attrs["rule_spec"].split(":")[0], attrs["path"]))
            bugs.add(attrs["known_bug"])
        for layer in r["model"]:
            if isinstance(layer, L.Conv2d):
                kinds.add(f"conv stride {layer.stride[0]}")
            elif isinstance(layer, (L.AvgPool2d, L.MaxPool2d)):
                kh, kw = layer.kernel_size  # type: ignore[misc]
                kinds.add(f"{type(layer).__name__} {'overlapping' if layer.stride[0] < kh else 'stride == kernel'}")
                if isinstance(layer, L.AvgPool2d):  # lrp_toolbox's SumPool: window sum / sqrt(k)
                    assert_allclose(layer.weight, 1 / np.sqrt(kh * kw), rtol=1e-15)
            else:
                kinds.add(type(layer).__name__)
    for rule in ("lrp0", "epsilon", "alpha_beta", "flat", "wsquare"):
        assert (rule, "fast") in rules
    for rule in ("lrp0", "epsilon", "alpha_beta"):
        assert (rule, "slow") in rules
    assert {"Dense", "ReLU", "Flatten", "conv stride 1", "conv stride 2", "AvgPool2d overlapping",
            "AvgPool2d stride == kernel", "MaxPool2d overlapping", "MaxPool2d stride == kernel"} <= kinds
    assert {"", SUMPOOL_ALPHABETA, SLOW_ALPHABETA} == bugs


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_forward_pass_matches_the_toolbox(path):
    r = read(path)
    output = r["model"].forward(r["x"])
    assert_allclose(output, r["output"], rtol=0, atol=1e-12 * float(np.max(np.abs(r["output"]))))
    assert np.array_equal(np.argmax(output, axis=1), r["target"])


@pytest.mark.parametrize("path, case", bug_cases(""), ids=ids(bug_cases("")))
def test_toolbox_profile_reproduces_the_toolbox(path, case):
    """Every recorded result that no toolbox bug touches: to 1e-10 of max|R| (measured: <= 2e-13)."""
    relevance, attrs = read(path)["cases"][case]
    close(oracle(path, attrs["rule_spec"]), relevance, f"{path.stem}: {attrs['call']}")


@pytest.mark.parametrize("path, case", bug_cases(SUMPOOL_ALPHABETA), ids=ids(bug_cases(SUMPOOL_ALPHABETA)))
def test_sumpool_alpha_beta_bug_is_not_reproduced(path, case):
    """SumPool._alphabeta_lrp (fast) is off; the toolbox's slow path and lrp_ref agree."""
    fast, attrs = read(path)["cases"][case]
    slow, slow_attrs = read(path)["cases"][case.replace("-fast", "-slow")]
    assert slow_attrs["known_bug"] == "" and slow_attrs["rule_spec"] == attrs["rule_spec"]
    ours = oracle(path, attrs["rule_spec"])
    close(ours, slow, f"{path.stem}: {slow_attrs['call']}")
    assert relative_difference(ours, fast) > 0.1  # the bug is large where it shows


@pytest.mark.parametrize("path, case", bug_cases(SLOW_ALPHABETA), ids=ids(bug_cases(SLOW_ALPHABETA)))
def test_slow_alpha_beta_stabilisers_are_not_reproduced(path, case):
    """The slow alpha-beta's missing stabiliser gives NaN, drops relevance or shows at tiny denominators;
    the fast path (+1e-16, -2e-16) and lrp_ref agree."""
    slow, attrs = read(path)["cases"][case]
    fast, fast_attrs = read(path)["cases"][case.replace("-slow", "-fast")]
    assert fast_attrs["known_bug"] == "" and fast_attrs["rule_spec"] == attrs["rule_spec"]
    ours = oracle(path, attrs["rule_spec"])
    close(ours, fast, f"{path.stem}: {fast_attrs['call']}")
    assert not np.all(np.isfinite(slow)) or relative_difference(slow, ours) > RTOL


def test_toolbox_alpha_beta_stabilisers_by_hand():
    """Fast toolbox alpha-beta: +1e-16 on the positive, -2e-16 on the negative denominator; on a sum pool
    (window weight 1/sqrt(k)) both on the plain window sum."""
    a, R = np.array([[3e-14, -1e-14]]), np.array([[1.0]])
    dense = lrp_ref.Sequential([L.Dense(np.array([[1.0, 1.0]]), np.array([0.0]))])
    e = lrp_ref.explain(dense, a, lrp_ref.rules.AlphaBeta(2, 1), output_relevance=R, profile="toolbox")
    assert_allclose(e.relevance, [[2 * 3e-14 / (3e-14 + 1e-16), -1 * -1e-14 / (-1e-14 - 2e-16)]], rtol=1e-14)
    pool = lrp_ref.Sequential([L.AvgPool2d(2, window_weight=np.full((2, 2), 0.5))])  # toolbox SumPool: sum / sqrt(4)
    x = np.array([[[[3e-14, 1e-14], [-1e-14, 0.0]]]])
    e = lrp_ref.explain(pool, x, lrp_ref.rules.AlphaBeta(2, 1), output_relevance=np.ones((1, 1, 1, 1)),
                        profile="toolbox")
    pos, neg = 4e-14 + 1e-16, -1e-14 - 2e-16
    assert_allclose(e.relevance, [[[[2 * 3e-14 / pos, 2 * 1e-14 / pos], [-1 * -1e-14 / neg, 0.0]]]], rtol=1e-14)
    e.ledger.check_balance()
