"""Import a PyTorch model that is not a plain chain, by tracing it with ``torch.fx``.

:func:`lrp_ref.from_torch` calls :func:`trace` for any module other than a
``torch.nn.Sequential`` of supported leaves.  ``torch.fx.symbolic_trace``
records the model's forward as a list of operations on one input; each
becomes a node of an :class:`lrp_ref.Graph`, or, where the operations form a
chain, a layer of an :class:`lrp_ref.Sequential`:

====================================================  =========================================
traced operation                                      lrp_ref
====================================================  =========================================
a supported module (see :mod:`lrp_ref.torch_bridge`)  that layer, one node per call
``Dropout``, ``Identity`` (modules or functions)      nothing: inference mode passes the input on
a final ``Softmax`` / ``softmax``                     dropped, noted in ``metadata["import_notes"]``
                                                      (LRP explains the logits)
``a + b``, ``torch.add(a, b)``                        :class:`~lrp_ref.merge.Add`
``torch.cat([...], dim=1)``                           :class:`~lrp_ref.merge.Concat`
``torch.flatten(x, 1)``, ``x.flatten(1)``             :class:`~lrp_ref.layers.Flatten`
``F.relu(x)``, ``torch.relu(x)``, ``x.relu()``        :class:`~lrp_ref.layers.ReLU`
``F.adaptive_avg_pool2d(x, size)``                    ``AdaptiveAvgPool2d(size)``
====================================================  =========================================

Anything else is refused with the traced node's name, its operation and a
hint; nothing is silently skipped.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ._import_graph import GraphBuilder
from .errors import LayerParameterError
from .graph import Graph, Sequential
from .layers import AdaptiveAvgPool2d, Flatten, Layer, ReLU
from .merge import Add, Concat

__all__ = ["trace"]

#: Returned by a converter for a module or function that inference mode makes the identity.
DROPPED = None


def _torch() -> Any:
    from .torch_bridge import _import_torch

    return _import_torch()


def _function_table(torch: Any) -> dict[Callable[..., Any], str]:
    F = torch.nn.functional
    return {
        operator.add: "add", operator.iadd: "add", torch.add: "add",
        torch.cat: "cat", torch.concat: "cat",
        torch.flatten: "flatten",
        F.relu: "relu", torch.relu: "relu",
        F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
        F.dropout: "dropout", F.dropout2d: "dropout",
        F.softmax: "softmax", torch.softmax: "softmax",
    }


_METHODS = {"flatten": "flatten", "relu": "relu", "softmax": "softmax"}


class _Refused(Exception):
    """Internal: an operation the importer cannot map (turned into LayerParameterError naming the node)."""


def trace(module: Any, dtype: Any, convert_module: Callable[[str, Any], Layer | None]) -> Sequential | Graph:
    """The lrp_ref model of ``module`` (see the module docstring).

    ``convert_module(name, submodule)`` converts one leaf module (None: the
    module is the identity at inference, such as Dropout).
    """
    torch = _torch()
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as exc:
        raise LayerParameterError(
            f"from_torch could not trace {type(module).__qualname__} with torch.fx ({type(exc).__name__}: {exc}); "
            "models whose forward branches on tensor values cannot be traced"
        ) from None
    functions = _function_table(torch)
    builder = GraphBuilder("from_torch")
    output: str | None = None
    for n in gm.graph.nodes:
        where = f"traced node {n.name!r} ({n.op} {_target_text(n.target)})"
        try:
            if n.op == "placeholder":
                builder.input(n.name)
            elif n.op == "output":
                output = _source_name(n.args[0])
            else:
                kind, layer, inputs = _operation(n, gm, functions, dtype, convert_module)
                names = [_source_name(a) for a in inputs]
                if kind == "softmax":
                    builder.softmax(where, n.name, names[0])
                elif layer is DROPPED:
                    builder.alias(where, n.name, names[0])
                else:
                    builder.layer(where, n.name, layer, names)
        except _Refused as exc:
            raise builder.refuse(where, str(exc)) from None
    if output is None:
        raise LayerParameterError(f"from_torch: {type(module).__qualname__} returns nothing")
    return builder.build(output)


def _target_text(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", repr(target))


def _source_name(arg: Any) -> str:
    name = getattr(arg, "name", None)
    if not isinstance(name, str):
        raise _Refused(f"reads {arg!r}, which is not a tensor computed from the model input")
    return name


def _operation(n: Any, gm: Any, functions: dict[Callable[..., Any], str], dtype: Any,
               convert_module: Callable[[str, Any], Layer | None]) -> tuple[str, Layer | None, list[Any]]:
    """(kind, layer or DROPPED, input fx nodes) of one traced operation."""
    args, kwargs = list(n.args), dict(n.kwargs)
    if n.op == "call_module":
        sub = gm.get_submodule(n.target)
        if type(sub).__name__ == "Softmax" and type(sub).__module__.startswith("torch.nn"):
            return "softmax", DROPPED, args[:1]
        _only_tensor_args(args, kwargs, 1)
        return "module", convert_module(str(n.target), sub), args
    if n.op == "call_function":
        kind = functions.get(n.target)
    elif n.op == "call_method":
        kind = _METHODS.get(n.target)
    else:  # get_attr: a parameter or buffer used directly in forward
        raise _Refused("reads a parameter directly in forward; lrp_ref maps modules, not raw tensors")
    if kind is None:
        raise _Refused("this operation is not supported; supported functions: a + b, torch.cat(dim=1), "
                       "torch.flatten(x, 1), relu, adaptive_avg_pool2d, dropout, a final softmax "
                       "(write other operations as torch.nn modules)")
    if kind == "add":
        if len(args) != 2 or kwargs or not all(hasattr(a, "name") for a in args):
            raise _Refused("only the sum of two computed tensors is supported (no scalars, no alpha)")
        return kind, Add(2, dtype=dtype), args
    if kind == "cat":
        tensors = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
            raise _Refused(f"only torch.cat of two or more tensors along the channels (dim=1) is supported; "
                           f"got dim={dim}")
        return kind, Concat(len(tensors), dtype=dtype), list(tensors)
    if kind == "flatten":
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if start != 1 or end != -1:
            raise _Refused(f"only flatten(x, 1) is supported (start_dim=1, end_dim=-1); got start_dim={start}, "
                           f"end_dim={end}")
        return kind, Flatten(dtype=dtype), args[:1]
    if kind == "relu":
        _only_tensor_args(args, {k: v for k, v in kwargs.items() if k != "inplace"}, 1)
        return kind, ReLU(dtype=dtype), args[:1]
    if kind == "dropout":
        return kind, DROPPED, args[:1]
    if kind == "softmax":
        return kind, DROPPED, args[:1]
    # adaptive_avg_pool2d
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    if size is None:
        raise _Refused("adaptive_avg_pool2d needs an output_size")
    return kind, AdaptiveAvgPool2d(size, dtype=dtype), args[:1]


def _only_tensor_args(args: list[Any], kwargs: dict[str, Any], n: int) -> None:
    if len(args) != n or kwargs:
        raise _Refused(f"expected {n} tensor argument(s) and no options; got {len(args)} argument(s) and "
                       f"{sorted(kwargs) or 'no'} keyword(s)")
