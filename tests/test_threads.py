"""The thread pool of lrp_ref._threads: explanations with threads are bit for bit those of one thread.

Each case explains the same batch twice, with ``LRP_REF_THREADS=1`` and with 2
threads, and compares every array of the two explanations with
``assert_array_equal`` (no tolerance).  ``MIN_ELEMENTS`` is lowered so that
even these small networks are cut into blocks (of samples, or of channels
for a batch of one); the shipped CNN runs once with the default threshold.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref as L
from lrp_ref import _threads, composites, rules
from lrp_ref.errors import ArgumentError

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def conv_net(rng: np.random.Generator, dtype: str) -> L.Sequential:
    """conv (pad 1) - relu - max-pool - conv (stride 2, groups 2) - relu - avg-pool - flatten - dense - relu - dense."""
    return L.Sequential([
        L.Conv2d(rng.normal(size=(8, 3, 3, 3)), rng.normal(scale=0.3, size=8), padding=1),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(rng.normal(size=(6, 4, 3, 3)) * 0.5, rng.normal(scale=0.3, size=6), stride=2, padding=1, groups=2),
        L.ReLU(),
        L.AvgPool2d(2, stride=1),
        L.Flatten(),
        L.Dense(rng.normal(size=(7, 6 * 2 * 2)) * 0.5, rng.normal(scale=0.3, size=7)),
        L.ReLU(),
        L.Dense(rng.normal(size=(4, 7)), rng.normal(scale=0.3, size=4)),
    ]).astype(dtype)


def explain_with(threads: int, monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> L.Explanation:
    monkeypatch.setenv("LRP_REF_THREADS", str(threads))
    assert _threads.n_threads() == threads
    return L.explain(*args, **kwargs)


def assert_same(one: L.Explanation, two: L.Explanation) -> None:
    assert_array_equal(one.output, two.output)
    for k, (a, b) in enumerate(zip(one.activations, two.activations)):
        assert_array_equal(a, b, err_msg=f"activation {k}")
    for k, (a, b) in enumerate(zip(one.layers, two.layers)):
        assert a.dtype == b.dtype
        assert_array_equal(a, b, err_msg=f"relevance at boundary {k}")
    for e1, e2 in zip(one.ledger.entries, two.ledger.entries):
        for key in ("r_out", "r_in", "absorbed", "scale"):
            assert_array_equal(getattr(e1, key), getattr(e2, key), err_msg=f"ledger {key} of layer {e1.index}")


RULE_SETS = {
    "epsilon_plus_flat": lambda: composites.epsilon_plus_flat(),
    "epsilon_gamma_box": lambda: composites.epsilon_gamma_box(low=-3.0, high=3.0),
    "epsilon_alpha2_beta1": lambda: composites.epsilon_alpha2_beta1(),
    "wsquare_gamma_lrp0": lambda: [rules.WSquare(), None, rules.WinnerTakesAll(ties="first"), rules.Gamma(0.5),
                                   None, rules.Epsilon(0.1), None, rules.LRP0(), None, rules.Epsilon(1e-3)],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_two_threads_give_the_one_thread_result_bit_for_bit(name, batch, dtype, monkeypatch):
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)  # cut even these small arrays into blocks
    rng = np.random.default_rng(batch)
    model = conv_net(rng, dtype)
    x = np.clip(rng.normal(size=(batch, 3, 12, 12)), -3, 3)  # signed inputs: the general sign-split path too
    one = explain_with(1, monkeypatch, model, x, RULE_SETS[name]())
    two = explain_with(2, monkeypatch, model, x, RULE_SETS[name]())
    assert_same(one, two)
    one.ledger.check_balance()
    two.ledger.check_balance()


@pytest.mark.parametrize("profile", ["zennit", "captum", "tutorial"])
def test_profiles_with_threads(profile, monkeypatch):
    """The generalised gamma (masks), Captum's pooling epsilon and the tutorial's average-instead pooling."""
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)
    rng = np.random.default_rng(7)
    model = conv_net(rng, "float64")
    x = np.abs(rng.normal(size=(3, 3, 12, 12)))
    comp = composites.epsilon_gamma_box(low=0.0, high=float(x.max()))
    assert_same(explain_with(1, monkeypatch, model, x, comp, profile=profile),
                explain_with(3, monkeypatch, model, x, comp, profile=profile))


@pytest.mark.parametrize("batch", [1, 64])
def test_shipped_cnn_with_the_default_threshold(batch, monkeypatch):
    model = L.load(WEIGHTS / "mnist_cnn.h5").astype("float32")
    x = np.random.default_rng(0).uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32)
    comp = composites.epsilon_gamma_box(low=0.0, high=1.0)
    assert_same(explain_with(1, monkeypatch, model, x, comp), explain_with(2, monkeypatch, model, x, comp))


# ----------------------------------------------------------------------------- the helpers themselves


@pytest.mark.parametrize("shape, other", [((6, 4, 5), (4, 1)), ((1, 9, 5), (9, 1)), ((1, 9, 5), (5,)),
                                          ((7, 3), (7, 3)), ((1, 1, 40), ())])
def test_elementwise_matches_the_ufunc_with_broadcasting(shape, other, monkeypatch):
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)
    monkeypatch.setenv("LRP_REF_THREADS", "4")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=shape), rng.normal(size=other)
    for op in (np.add, np.multiply, np.divide, np.maximum):
        assert_array_equal(_threads.elementwise(op, x, y), op(x, y))
    out = x.copy()
    _threads.elementwise(np.multiply, out, y, out=out)
    assert_array_equal(out, x * y)


def test_per_sample_sums_are_those_of_numpy(monkeypatch):
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)
    monkeypatch.setenv("LRP_REF_THREADS", "3")
    x = np.random.default_rng(2).normal(size=(7, 3, 50, 11)).astype(np.float32)
    assert_array_equal(_threads.per_sample_sum(x), x.reshape(7, -1).sum(axis=1))
    assert_array_equal(_threads.per_sample_sum(x, absolute=True), np.abs(x).reshape(7, -1).sum(axis=1))
    assert _threads.per_sample_sum(x).dtype == np.float32


def test_blocks_cover_the_array_once(monkeypatch):
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)
    monkeypatch.setenv("LRP_REF_THREADS", "3")
    for shape in [(7, 5), (1, 5, 2), (2, 9), (1, 1, 4)]:
        seen = np.zeros(shape, int)

        def mark(index, seen=seen):
            seen[index] += 1
            return index

        blocks = _threads.run_blocks(mark, shape)
        assert_array_equal(seen, np.ones(shape, int))
        assert len(blocks) == min(3, shape[0] if shape[0] > 1 else shape[1] if shape[1] > 1 else 1)


def test_an_error_in_a_block_is_raised_and_errstate_holds_in_every_thread(monkeypatch):
    monkeypatch.setattr(_threads, "MIN_ELEMENTS", 1)
    monkeypatch.setenv("LRP_REF_THREADS", "2")

    def fail(index):
        if index and index[0].start:
            raise ValueError("block failed")

    with pytest.raises(ValueError, match="block failed"):
        _threads.run_blocks(fail, (4, 3))
    big = np.full((4, 3), np.finfo(np.float32).max, np.float32)
    with np.errstate(over="ignore"):  # pytest turns warnings into errors: a worker without it would fail
        out = _threads.elementwise(np.multiply, big, np.float32(2))
    assert np.all(np.isinf(out))
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        _threads.elementwise(np.multiply, big, np.float32(2))


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.delenv("LRP_REF_THREADS", raising=False)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _threads.n_threads() == expected
    monkeypatch.setenv("LRP_REF_THREADS", "1")
    assert _threads.n_threads() == 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("LRP_REF_THREADS", bad)
        with pytest.raises(ArgumentError, match="LRP_REF_THREADS must be a positive integer"):
            _threads.n_threads()
