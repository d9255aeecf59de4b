"""The committed conformance vectors: they regenerate bit for bit, and the recorded peers agree."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref
from lrp_ref import profiles, rules, vectors
from lrp_ref.testing import assert_relevance_close

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("*.h5"))


def test_the_suite_and_the_committed_files_match():
    assert FILES, "tests/golden is empty: run `lrp-ref vectors --out tests/golden`"
    assert sorted(f"{case.name}.h5" for case in vectors.suite()) == [p.name for p in FILES]


def test_the_suite_covers_every_rule_and_layer_type():
    seen_rules, seen_layers = set(), set()
    for path in FILES:
        with h5py.File(path, "r") as f:
            seen_rules |= {str(g.attrs["rule"]) for g in f["rules"].values()}
            seen_layers |= {str(g.attrs["type"]) for g in f["model/layers"].values()}
    linear = {"LRP0", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "WSquare", "Flat"}
    assert linear | {"Pass", "WinnerTakesAll"} <= seen_rules
    assert {"Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU", "Flatten", "BatchNorm2d", "GlobalAvgPool2d", "Add",
            "Concat"} <= seen_layers
    assert all(hasattr(rules, name) for name in seen_rules)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_regenerates(path):
    """Bit for bit on the platform that wrote the vectors; elsewhere (another BLAS kernel sums in
    another order) to 1e-13 of max|R|, far below what any convention changes."""
    stored = vectors.read_vector(path)
    exact = stored.platform == vectors.platform_fingerprint()
    e = stored.case().explain()

    def same(fresh: np.ndarray, kept: np.ndarray, what: str) -> None:
        if exact:
            assert_array_equal(fresh, kept, err_msg=what)
        else:
            assert_relevance_close(fresh, kept, rtol=1e-13, what=what)

    assert_array_equal(e.target, stored.target)
    same(e.output, stored.output, "output")
    assert len(e.layers) == len(stored.layers)
    for k, (fresh, kept) in enumerate(zip(e.layers, stored.layers)):
        same(fresh, kept, f"relevance at boundary {k}")
    for key in ("r_out", "r_in", "absorbed"):
        same(np.stack([getattr(b, key) for b in e.ledger.entries]), stored.ledger[key], f"ledger {key}")


def test_golden_platform_is_recorded():
    platforms = {vectors.read_vector(p).platform for p in FILES}
    assert len(platforms) == 1 and "numpy" in next(iter(platforms))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_recorded_peers_agree_with_the_oracle(path):
    """The peer's numbers, recorded by scripts/record_peers.py, against lrp_ref under the matching profile."""
    stored = vectors.read_vector(path)
    exact = stored.platform == vectors.platform_fingerprint()
    for library, peer in stored.peers.items():
        assert peer.profile in profiles.PROFILES
        assert_relevance_close(peer.relevance, peer.oracle, rtol=1e-12, what=f"{library} on {stored.name}")
        fresh = stored.case().explain(profile=peer.profile)
        if exact:
            assert_array_equal(fresh.relevance, peer.oracle)
        else:
            assert_relevance_close(fresh.relevance, peer.oracle, rtol=1e-13)


def test_every_vector_carries_the_peers_that_apply():
    """zennit has every rule but LRP-0 and every composite but depth_based; Captum has epsilon, gamma and z+.

    Graph vectors carry none: to_torch's module computes a residual sum with `+` and a concatenation with
    torch.cat, which the peers' module hooks do not see (zennit needs its canonizers' Sum module; the
    torchvision cross-check compares zennit on graphs that way).
    """
    for path in FILES:
        stored = vectors.read_vector(path)
        peers = set(stored.peers)
        if not isinstance(stored.model, lrp_ref.Sequential):
            assert peers == set(), path.name
            continue
        rule = path.stem.split("-", 1)[1]
        assert ("zennit" in peers) == (rule not in ("lrp0", "depth_based")), path.name
        assert ("captum" in peers) == (rule in ("epsilon", "gamma", "zplus")), path.name


def test_vector_files_are_refused_when_not_vectors(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(vectors.ModelFormatError, match="not an lrp_ref vector file"):
        vectors.read_vector(bad)
