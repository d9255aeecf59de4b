"""Small ONNX graphs built with ``onnx.helper``, and the checks every imported model must pass.

The forward reference is ``onnx.reference.ReferenceEvaluator``, the ONNX
package's own NumPy implementation of the operators (it shares no code with
lrp_ref); the gradient reference is central differences, exact up to
rounding on these piecewise-linear nets away from kinks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.layers import LinearLayer

try:
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
except ImportError:  # pragma: no cover - the test extra installs onnx
    pass


def node(op: str, inputs: list[str], outputs: list[str], name: str | None = None, **attrs: Any) -> Any:
    return helper.make_node(op, inputs, outputs, name=name or outputs[0], **attrs)


def model(nodes: list[Any], inits: dict[str, np.ndarray], x_shape: tuple[Any, ...], opset: int = 17,
          elem: int | None = None, output: str = "y", extra_inputs: tuple[Any, ...] = (), out_rank: int = 2) -> Any:
    """A model with input ``x`` of shape (N, *x_shape), the initializers ``inits`` and output ``output``."""
    elem = TensorProto.DOUBLE if elem is None else elem
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info("x", elem, ["N", *x_shape]), *extra_inputs],
        [helper.make_tensor_value_info(output, elem, [None] * out_rank)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 18 else 10
    return m


def reference_forward(m: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(ReferenceEvaluator(m).run(None, {m.graph.input[0].name: x})[0])


def check_forward(m: Any, x: np.ndarray) -> L.Graph:
    """from_onnx(m) computes what the ONNX reference evaluator computes, to 1e-10 (float64)."""
    ours = L.from_onnx(m)
    ref = reference_forward(m, x)
    out = ours.forward(x)
    assert_allclose(out, ref, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(ref).max())))
    return ours


def gradient(model: L.Graph, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d f_target / dx by the layers' adjoints (reverse mode), not by any rule.

    Linear layers by ``vjp`` (each checked by a dot-product test in
    test_layers.py), ReLU by its mask, max pooling by routing to the first
    arg-max (PyTorch's gradient), Flatten by a reshape, Concat by slices.
    """
    tensors = model.forward_all(x)
    grads = [np.zeros_like(t) for t in tensors]
    grads[-1][np.arange(x.shape[0]), target] = 1.0
    for i in reversed(range(len(model))):
        layer, g, a = model[i], grads[i + 1], model.pack(i, tensors)
        if isinstance(layer, L.ReLU):
            ga = g * (a > 0)
        elif isinstance(layer, L.MaxPool2d):
            ga = layer.route(a, g, ties="first")
        elif isinstance(layer, (L.Flatten, L.Concat)):
            ga = g.reshape(a.shape)
        else:
            ga = layer.vjp(g, a.shape[1:])
        for t, part in zip(model.sources(i), model.unpack(i, ga, tensors)):
            grads[t] = grads[t] + part
    return grads[0]


def numerical_gradient(model: L.Graph, x: np.ndarray, target: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of f_target at every input entry, all in one batch per sample."""
    grad = np.empty_like(x)
    d = x[0].size
    for n in range(x.shape[0]):
        steps = (h * np.eye(d)).reshape(d, *x.shape[1:])
        batch = np.concatenate([x[n] + steps, x[n] - steps])
        out = model.forward(batch)[:, target[n]]
        grad[n] = ((out[:d] - out[d:]) / (2 * h)).reshape(x.shape[1:])
    return grad


def check_lrp0(model: L.Graph, x: np.ndarray, grad: np.ndarray | None = None) -> L.Explanation:
    """LRP-0 equals gradient x input (1e-10 of its largest entry), and the ledger balances.

    The gradient is ``grad`` if given (the source framework's autograd), else
    the adjoints' (:func:`gradient`), itself checked against central
    differences (1e-6: their rounding error is about 1e-12 / h).
    """
    # LRP-0 on every linear layer, residual sums included (their default is epsilon)
    e = L.explain(model, x, [R.LRP0() if isinstance(layer, LinearLayer) else None for layer in model])
    if grad is None:
        grad = gradient(model, x, e.target)
        fd = numerical_gradient(model, x, e.target)
        assert_allclose(grad, fd, rtol=0, atol=1e-6 * max(1.0, float(np.abs(fd).max())))
    expected = x * grad
    assert_allclose(e.relevance, expected, rtol=0, atol=1e-10 * float(np.abs(expected).max()))
    e.ledger.check_balance()
    e.ledger.check_conservation()
    return e
