"""from_torch on models that are not chains (torch.fx tracing): forward, gradient x input, refusals.

Models with residual sums, concatenations, functional calls, Dropout and a final Softmax are
converted to an lrp_ref Graph; its forward equals PyTorch's (float64, 1e-12), LRP-0 with
LRP-0 on the sums equals PyTorch's gradient x input, and every unsupported operation is refused
naming the traced node.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import lrp_ref  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.errors import LayerParameterError  # noqa: E402
from lrp_ref.merge import Add  # noqa: E402


class ResidualConcat(nn.Module):
    """A residual block, a concatenation, Dropout, a functional ReLU and a final Softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.side = nn.Conv2d(3, 2, 1)
        self.drop = nn.Dropout(0.3)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(5 * 4 * 4, 4)
        self.softmax = nn.Softmax(dim=1)

    def logits(self, x):
        y = self.relu(self.c1(x))
        y = F.relu(self.c2(y) + x)
        y = torch.cat([y, self.side(y)], dim=1)
        return self.fc(torch.flatten(self.pool(self.drop(y)), 1))

    def forward(self, x):
        return self.softmax(self.logits(x))


def model_and_input(seed: int = 0):
    torch.manual_seed(seed)
    m = ResidualConcat().double().eval()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    return m, x


def test_forward_equals_torch_logits_and_the_softmax_is_noted() -> None:
    m, x = model_and_input()
    g = lrp_ref.from_torch(m)
    assert isinstance(g, lrp_ref.Graph) and not isinstance(g, lrp_ref.Sequential)
    assert g.metadata["import_notes"] == "dropped the final softmax ('softmax'): LRP explains the logits"
    expected = m.logits(x).detach().numpy()
    np.testing.assert_allclose(g.forward(x.numpy()), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    assert [n.name for n in g.nodes if isinstance(n.layer, Add)] == ["add"]


def test_lrp0_equals_torch_gradient_times_input() -> None:
    m, x = model_and_input(1)
    g = lrp_ref.from_torch(m)
    rules = [R.LRP0() if isinstance(layer, (lrp_ref.Dense, lrp_ref.Conv2d, lrp_ref.AvgPool2d, Add)) else None
             for layer in g]
    e = lrp_ref.explain(g, x.numpy(), rules)
    xg = x.clone().requires_grad_(True)
    out = m.logits(xg)
    out[torch.arange(3), torch.as_tensor(e.target)].sum().backward()
    expected = (xg * xg.grad).detach().numpy()
    np.testing.assert_allclose(e.relevance, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    e.ledger.check_balance()


def test_a_chain_of_modules_imports_as_a_sequential() -> None:
    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.fc2(F.relu(nn.functional.dropout(self.fc1(x), 0.5, training=False)))

    model = lrp_ref.from_torch(Chain().double())
    assert type(model) is lrp_ref.Sequential
    assert [type(layer).__name__ for layer in model] == ["Dense", "ReLU", "Dense"]


class _Wrap(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fn = fn

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("fn, fragment", [
    (lambda s, x: s.fc(x) + 1.0, "only the sum of two computed tensors"),
    (lambda s, x: torch.tanh(s.fc(x)), "tanh"),
    (lambda s, x: s.fc(x) * s.fc(x), "mul"),
    (lambda s, x: torch.cat([s.fc(x), x], dim=0), "along the channels"),
    (lambda s, x: F.softmax(s.fc(x), 1) + x, "softmax may only end the model"),
    (lambda s, x: s.fc(x) @ s.fc.weight, "reads a parameter directly"),
])
def test_unsupported_operations_are_refused_naming_the_node(fn, fragment) -> None:
    with pytest.raises(LayerParameterError, match="traced node") as info:
        lrp_ref.from_torch(_Wrap(fn).double())
    assert fragment in str(info.value)


def test_round_trip_graph_torch_graph() -> None:
    m, x = model_and_input(2)
    g = lrp_ref.from_torch(m)
    back = lrp_ref.to_torch(g)
    expected = m.logits(x).detach().numpy()
    np.testing.assert_allclose(back(x).detach().numpy(), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    again = lrp_ref.from_torch(back)
    assert [type(layer) for layer in again] == [type(layer) for layer in g]
    np.testing.assert_allclose(again.forward(x.numpy()), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
