"""The blocked convolution paths (window matrix split into samples and rows) against the loops.

Real inputs only reach the row-splitting path when one sample's window matrix exceeds
lrp_ref._windows.BLOCK_BYTES (16 MiB); here the budget is forced down so that every path runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import _windows


# window-matrix row of one sample: 2016 bytes (plain), 432 bytes (grouped); a sample: 18144 / 1728 bytes
@pytest.mark.parametrize("budget", [1, 5000, 40000], ids=["one-row-blocks", "two-row-blocks", "two-sample-blocks"])
@pytest.mark.parametrize("config", [dict(stride=1, padding=1), dict(stride=2, padding=1, dilation=2, groups=2)],
                         ids=["plain", "strided-dilated-grouped"])
def test_blocked_conv_matches_loops(monkeypatch, budget, config):
    monkeypatch.setattr(_windows, "BLOCK_BYTES", budget)
    rng = np.random.default_rng(budget)
    in_per_group = 4 // config.get("groups", 1)  # 4 input channels in all
    layer = L.Conv2d(rng.normal(size=(4, in_per_group, 3, 3)), rng.normal(size=4), **config)
    a = rng.normal(size=(3, 4, 9, 7))
    W, b = ref.dense_matrix(layer, a.shape[1:])
    out = layer.forward(a)
    assert_allclose(out.reshape(3, -1), a.reshape(3, -1) @ W + b, rtol=1e-12, atol=1e-12)
    s = rng.normal(size=out.shape)
    assert_allclose(layer.vjp(s, a.shape[1:]).reshape(3, -1), s.reshape(3, -1) @ W.T, rtol=1e-12, atol=1e-12)
