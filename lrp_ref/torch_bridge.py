"""Convert between PyTorch models and lrp_ref models (:class:`lrp_ref.Sequential`, :class:`lrp_ref.Graph`).

PyTorch is an optional extra: ``import lrp_ref`` never imports it, and this
module imports it only inside :func:`from_torch` and :func:`to_torch`.  Use them
to explain a PyTorch model with lrp_ref, and to cross-check other LRP
implementations (zennit, Captum) against lrp_ref on the same network.

Supported modules (matched by exact type, so a subclass with its own
``forward`` is refused rather than silently mistranslated):

=====================  =============================================================
``torch.nn``           lrp_ref
=====================  =============================================================
``Linear``             :class:`~lrp_ref.layers.Dense`
``Conv2d``             :class:`~lrp_ref.layers.Conv2d`: stride, padding (int, pair,
                       ``'valid'``, ``'same'`` when it pads both sides equally),
                       dilation, groups; ``padding_mode='zeros'`` only
``ReLU``               :class:`~lrp_ref.layers.ReLU` (``inplace`` is irrelevant)
``MaxPool2d``          :class:`~lrp_ref.layers.MaxPool2d`: kernel, stride, padding;
                       ``dilation=1``, ``ceil_mode=False``, ``return_indices=False``
``AvgPool2d``          :class:`~lrp_ref.layers.AvgPool2d`: kernel, stride, padding,
                       ``count_include_pad``; ``ceil_mode=False``, ``divisor_override=None``
``AdaptiveAvgPool2d``  :class:`~lrp_ref.layers.AdaptiveAvgPool2d` (an int or pair size)
``BatchNorm1d/2d``     :class:`~lrp_ref.layers.BatchNorm1d` / ``BatchNorm2d`` with the
                       running statistics (inference mode); merge them into the layer
                       before with :func:`lrp_ref.canonize`
``Flatten``            :class:`~lrp_ref.layers.Flatten`: ``start_dim=1, end_dim=-1``
``Dropout``,           nothing: the identity at inference
``Identity``
``Softmax``            dropped when it ends the model, noted in ``metadata["import_notes"]``
``Sequential``         flattened into its parent, in order
=====================  =============================================================

Everything else raises :class:`~lrp_ref.errors.LayerParameterError` naming the
module's position, its dotted name in the PyTorch model, its type and what is
supported.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._checks import check_dtype
from .errors import LayerParameterError, LrpRefError
from .graph import Graph, Sequential
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    MaxPool2d,
    ReLU,
)
from .merge import Add, Concat

__all__ = ["SUPPORTED_MODULES", "from_torch", "to_torch"]

#: Names of the ``torch.nn`` modules :func:`from_torch` converts (``Sequential`` is flattened).
SUPPORTED_MODULES = ("Linear", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d",
                     "BatchNorm2d", "Flatten", "Dropout", "Dropout2d", "Identity", "Softmax", "Sequential")

_SUPPORTED_TEXT = (
    "supported: torch.nn.Linear, Conv2d (padding_mode='zeros'), ReLU, MaxPool2d (dilation=1, ceil_mode=False, "
    "return_indices=False), AvgPool2d (ceil_mode=False, divisor_override=None), AdaptiveAvgPool2d, "
    "BatchNorm1d/2d (running statistics), Flatten (start_dim=1, end_dim=-1), Dropout and Identity (dropped), "
    "a final Softmax (dropped), and nested Sequential"
)


def _import_torch() -> Any:
    # importlib rather than ``import torch``: the type checker must not need torch installed
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "lrp_ref.torch_bridge needs PyTorch, an optional extra of lrp_ref: pip install torch"
        ) from exc
    return torch


def _leaves(module: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted name, module) of every non-Sequential module, nested Sequentials flattened in order."""
    torch = _import_torch()
    out: list[tuple[str, Any]] = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) is torch.nn.Sequential:
            out.extend(_leaves(child, path))
        else:
            out.append((path, child))
    return out


def _array(tensor: Any, dtype: np.dtype[Any]) -> NDArray[Any]:
    """A NumPy copy of a parameter tensor (float64 first, so a float32 tensor converts exactly)."""
    torch = _import_torch()
    return np.array(tensor.detach().to(device="cpu", dtype=torch.float64).numpy(), dtype=dtype)


def _same_padding(module: Any) -> tuple[int, int]:
    """The symmetric padding that PyTorch's ``padding='same'`` amounts to, or refuse."""
    pads = []
    for d, k in zip(module.dilation, module.kernel_size):
        total = d * (k - 1)
        if total % 2:
            raise _Refused(
                f"padding='same' with kernel_size={tuple(module.kernel_size)} and "
                f"dilation={tuple(module.dilation)} pads one side more than the other (total {total}), "
                "but lrp_ref's Conv2d pads both sides equally: use an odd effective kernel or explicit padding"
            )
        pads.append(total // 2)
    return pads[0], pads[1]


def _qualified(module: Any) -> str:
    kind = type(module)
    return f"torch.nn.{kind.__name__}" if kind.__module__.startswith("torch.nn.") else (
        f"{kind.__module__}.{kind.__qualname__}"
    )


def _describe(index: int, name: str, module: Any) -> str:
    return f"module {index} ('{name}', {_qualified(module)})"


def _convert(index: int | None, name: str, module: Any, dtype: np.dtype[Any]) -> Layer | None:
    """One lrp_ref layer for one leaf module (None: the identity at inference); refusals name the module."""
    where = _describe(index, name, module) if index is not None else f"module '{name}' ({_qualified(module)})"
    try:
        return _convert_unchecked(module, dtype)
    except _Refused as exc:
        raise LayerParameterError(f"{where}: {exc}; {_SUPPORTED_TEXT}") from None
    except LrpRefError as exc:  # a value lrp_ref's layer itself refuses (e.g. MaxPool2d padding > kernel / 2)
        raise LayerParameterError(f"{where}: {exc}") from None


class _Refused(Exception):
    """Internal: an unsupported module or option (turned into LayerParameterError by _convert)."""


def _convert_unchecked(module: Any, dtype: np.dtype[Any]) -> Layer | None:
    torch = _import_torch()
    nn = torch.nn
    kind = type(module)

    def refuse(reason: str) -> _Refused:
        return _Refused(reason)

    if kind in (nn.Dropout, nn.Dropout2d, nn.Identity):
        return None  # the identity at inference: the layer disappears
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            raise refuse("track_running_stats=False is not supported (inference needs the running statistics)")
        channels = module.num_features
        gamma = _array(module.weight, dtype) if module.affine else np.ones(channels, dtype)
        beta = _array(module.bias, dtype) if module.affine else np.zeros(channels, dtype)
        make = BatchNorm1d if kind is nn.BatchNorm1d else BatchNorm2d
        return make(gamma, beta, _array(module.running_mean, dtype), _array(module.running_var, dtype),
                    eps=float(module.eps), dtype=dtype)
    if kind is nn.AdaptiveAvgPool2d:
        size = module.output_size
        if size is None or (isinstance(size, (tuple, list)) and None in size):
            raise refuse(f"output_size={size!r} is not supported (None keeps an input size lrp_ref cannot know)")
        return AdaptiveAvgPool2d(_pair(size), dtype=dtype)

    if kind is nn.Linear:
        bias = None if module.bias is None else _array(module.bias, dtype)
        return Dense(_array(module.weight, dtype), bias, dtype=dtype)
    if kind is nn.Conv2d:
        if module.padding_mode != "zeros":
            raise refuse(f"padding_mode={module.padding_mode!r} is not supported (only 'zeros')")
        if isinstance(module.padding, str):
            if module.padding == "valid":
                padding: tuple[int, int] = (0, 0)
            elif module.padding == "same":
                padding = _same_padding(module)
            else:  # pragma: no cover - torch itself refuses other strings
                raise refuse(f"padding={module.padding!r} is not supported")
        else:
            padding = (int(module.padding[0]), int(module.padding[1]))
        bias = None if module.bias is None else _array(module.bias, dtype)
        return Conv2d(
            _array(module.weight, dtype), bias, stride=tuple(module.stride), padding=padding,
            dilation=tuple(module.dilation), groups=int(module.groups), dtype=dtype,
        )
    if kind is nn.ReLU:
        return ReLU(dtype=dtype)
    if kind is nn.MaxPool2d:
        if module.dilation not in (1, (1, 1), [1, 1]):
            raise refuse(f"dilation={module.dilation!r} is not supported (only 1)")
        if module.ceil_mode:
            raise refuse("ceil_mode=True is not supported (lrp_ref pools in floor mode)")
        if module.return_indices:
            raise refuse("return_indices=True is not supported (the layer must return one tensor)")
        stride = module.stride if module.stride is not None else module.kernel_size
        return MaxPool2d(_pair(module.kernel_size), _pair(stride), _pair(module.padding), dtype=dtype)
    if kind is nn.AvgPool2d:
        if module.ceil_mode:
            raise refuse("ceil_mode=True is not supported (lrp_ref pools in floor mode)")
        if module.divisor_override is not None:
            raise refuse(f"divisor_override={module.divisor_override!r} is not supported (only None)")
        stride = module.stride if module.stride is not None else module.kernel_size
        return AvgPool2d(_pair(module.kernel_size), _pair(stride), padding=_pair(module.padding),
                         count_include_pad=bool(module.count_include_pad), dtype=dtype)
    if kind is nn.Flatten:
        if module.start_dim != 1 or module.end_dim != -1:
            raise refuse(
                f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) is not supported "
                "(only start_dim=1, end_dim=-1)"
            )
        return Flatten(dtype=dtype)
    raise refuse("this module type is not supported")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise _Refused(f"expected an int or a pair of ints; got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def from_torch(module: Any, dtype: DTypeLike = np.float64) -> Sequential | Graph:
    """Convert a PyTorch model into an lrp_ref model.

    A ``torch.nn.Sequential`` of supported leaves is converted leaf by leaf
    (nested Sequentials flattened, in order).  Any other module is traced with
    ``torch.fx`` (:mod:`lrp_ref._torch_trace`): residual sums, concatenations
    and functional calls become the nodes of a :class:`~lrp_ref.graph.Graph`,
    or of a :class:`~lrp_ref.graph.Sequential` where they form a chain.
    ``Dropout`` and ``Identity`` disappear (inference mode); a final
    ``Softmax`` is dropped, with a note in ``metadata["import_notes"]``: LRP
    explains the logits.

    Parameters
    ----------
    module : torch.nn.Module
        See the module docstring for the supported leaves and options.
        Parameters of any floating dtype and device are copied (via float64,
        so float32 weights convert exactly).
    dtype : float64 (default) or float32
        dtype of the lrp_ref model.

    Returns
    -------
    Sequential or Graph
        The same function as ``module`` in inference mode.

    Raises
    ------
    LayerParameterError
        For an unsupported module, function or option, naming its position
        and dotted name (or traced node), its type and what is supported;
        also if the model has no layers or cannot be traced.
    ImportError
        If PyTorch is not installed.
    """
    torch = _import_torch()
    dt = check_dtype(dtype)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch converts a torch.nn.Module; got {type(module).__module__}."
                        f"{type(module).__qualname__}")
    if type(module) is torch.nn.Sequential:
        leaves = _leaves(module, "")
        if not leaves:
            raise LayerParameterError("from_torch: the torch.nn.Sequential has no layers")
        notes = []
        last, last_module = leaves[-1]
        if type(last_module) is torch.nn.Softmax:
            leaves = leaves[:-1]
            notes.append(f"dropped the final softmax ({last!r}): LRP explains the logits")
        layers = [_convert(i, name, child, dt) for i, (name, child) in enumerate(leaves)]
        kept = [layer for layer in layers if layer is not None]
        if not kept:
            raise LayerParameterError("from_torch: the torch.nn.Sequential has no layers lrp_ref can explain "
                                      "(only Dropout, Identity or a softmax)")
        return Sequential(kept, {"import_notes": "; ".join(notes)} if notes else {})
    from ._torch_trace import trace

    return trace(module, dt, lambda name, sub: _convert(None, name, sub, dt))


def to_torch(model: Graph) -> Any:
    """Convert an lrp_ref model into a PyTorch module with float64 parameters.

    The reverse of :func:`from_torch`, for tests and cross-checks.  A
    :class:`~lrp_ref.graph.Sequential` becomes a ``torch.nn.Sequential`` whose
    child ``str(i)`` is layer ``i``; a :class:`~lrp_ref.graph.Graph` becomes a
    module that runs its nodes in order (children named after the nodes, with
    ``.`` replaced by ``_``), adding the inputs of an ``Add`` and concatenating
    those of a ``Concat`` along the channels.  The result is in evaluation
    mode; its parameters are float64 whatever the dtype of ``model``, so feed
    it float64 inputs.

    Parameters
    ----------
    model : Sequential or Graph

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    LayerParameterError
        For a layer PyTorch cannot express: an ``AvgPool2d`` whose window
        weights were modified (not the average ``1 / (kh kw)``), an ``Add``
        with summand weights other than 1.
    TypeError
        If ``model`` is not an lrp_ref model, or a layer is of an unknown type.
    ImportError
        If PyTorch is not installed.
    """
    torch = _import_torch()
    if not isinstance(model, Graph):
        raise TypeError(f"to_torch converts an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    modules = [_to_module(i, layer) for i, layer in enumerate(model)]
    if isinstance(model, Sequential):
        return torch.nn.Sequential(*modules).eval()
    return _graph_module(torch, model, modules).eval()


def _graph_module(torch: Any, model: Graph, modules: list[Any]) -> Any:
    """A torch module running the nodes of ``model`` in order."""
    names = [node.name.replace(".", "_") for node in model.nodes]
    sources = [model.sources(i) for i in range(len(model))]
    kinds = ["add" if isinstance(layer, Add) else "cat" if isinstance(layer, Concat) else "one" for layer in model]

    class GraphModule(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.nodes = torch.nn.ModuleDict({n: m for n, m in zip(names, modules) if m is not None})

        def forward(self, x: Any) -> Any:
            tensors = [x]
            for name, kind, srcs in zip(names, kinds, sources):
                inputs = [tensors[t] for t in srcs]
                if kind == "add":
                    out = inputs[0]
                    for other in inputs[1:]:
                        out = out + other
                elif kind == "cat":
                    out = torch.cat(inputs, dim=1)
                else:
                    out = self.nodes[name](inputs[0])
                tensors.append(out)
            return tensors[-1]

    return GraphModule()


def _to_module(i: int, layer: Layer) -> Any:
    """The torch module of one lrp_ref layer (None for the merge layers, which a graph module computes itself)."""
    torch = _import_torch()
    nn = torch.nn

    def tensor(a: NDArray[Any]) -> Any:
        return nn.Parameter(torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64))

    m: Any
    if isinstance(layer, Add):
        if not np.all(layer.weight == 1):
            raise LayerParameterError(f"layer {i} ({layer.describe()}): a torch sum cannot weight its summands")
        return None
    if isinstance(layer, Concat):
        return None
    if len(getattr(layer, "padding", ())) == 4:  # torch.nn's layers pad both sides alike
        raise LayerParameterError(f"layer {i} ({layer.describe()}): torch.nn cannot express padding "
                                  "(top, bottom, left, right) in the layer itself")
    if isinstance(layer, Dense):
        m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=torch.float64)
        m.weight = tensor(layer.weight)
        if layer.bias is not None:
            m.bias = tensor(layer.bias)
    elif isinstance(layer, Conv2d):
        m = nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
            dtype=torch.float64,
        )
        m.weight = tensor(layer.weight)
        if layer.bias is not None:
            m.bias = tensor(layer.bias)
    elif isinstance(layer, AvgPool2d):
        kh, kw = layer.kernel_size  # type: ignore[misc]
        if not np.array_equal(layer.weight, np.full((kh, kw), 1.0 / (kh * kw), dtype=layer.dtype)):
            raise LayerParameterError(
                f"layer {i} ({layer.describe()}): torch.nn.AvgPool2d cannot express modified window weights"
            )
        m = nn.AvgPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding,
                         count_include_pad=layer.count_include_pad)
    elif isinstance(layer, MaxPool2d):
        m = nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)
    elif isinstance(layer, AdaptiveAvgPool2d):
        m = nn.AdaptiveAvgPool2d(layer.output_size)
    elif isinstance(layer, BatchNorm):
        make = nn.BatchNorm1d if isinstance(layer, BatchNorm1d) else nn.BatchNorm2d
        m = make(layer.gamma.shape[0], eps=layer.eps, dtype=torch.float64)
        m.weight, m.bias = tensor(layer.gamma), tensor(layer.beta)
        m.running_mean = torch.tensor(np.asarray(layer.running_mean, dtype=np.float64))
        m.running_var = torch.tensor(np.asarray(layer.running_var, dtype=np.float64))
    elif isinstance(layer, ReLU):
        m = nn.ReLU()
    elif isinstance(layer, Flatten):
        m = nn.Flatten()
    else:
        raise TypeError(f"layer {i}: to_torch does not know {type(layer).__name__}")
    return m
