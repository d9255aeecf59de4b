"""Convert between ``torch.nn.Sequential`` and :class:`lrp_ref.Sequential`.

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
``AvgPool2d``          :class:`~lrp_ref.layers.AvgPool2d`: kernel, stride;
                       ``padding=0`` (so ``count_include_pad`` has no effect),
                       ``ceil_mode=False``, ``divisor_override=None``
``Flatten``            :class:`~lrp_ref.layers.Flatten`: ``start_dim=1, end_dim=-1``
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
from .layers import AvgPool2d, Conv2d, Dense, Flatten, Layer, MaxPool2d, ReLU
from .sequential import Sequential

__all__ = ["SUPPORTED_MODULES", "from_torch", "to_torch"]

#: Names of the ``torch.nn`` modules :func:`from_torch` converts (``Sequential`` is flattened).
SUPPORTED_MODULES = ("Linear", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Sequential")

_SUPPORTED_TEXT = (
    "supported: torch.nn.Linear, Conv2d (padding_mode='zeros'), ReLU, MaxPool2d (dilation=1, ceil_mode=False, "
    "return_indices=False), AvgPool2d (padding=0, ceil_mode=False, divisor_override=None), "
    "Flatten (start_dim=1, end_dim=-1), and nested Sequential"
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


def _describe(index: int, name: str, module: Any) -> str:
    kind = type(module)
    qualified = f"torch.nn.{kind.__name__}" if kind.__module__.startswith("torch.nn.") else (
        f"{kind.__module__}.{kind.__qualname__}"
    )
    return f"module {index} ('{name}', {qualified})"


def _convert(index: int, name: str, module: Any, dtype: np.dtype[Any]) -> Layer:
    """One lrp_ref layer for one leaf module; refusals name the module."""
    where = _describe(index, name, module)
    try:
        return _convert_unchecked(module, dtype)
    except _Refused as exc:
        raise LayerParameterError(f"{where}: {exc}; {_SUPPORTED_TEXT}") from None
    except LrpRefError as exc:  # a value lrp_ref's layer itself refuses (e.g. MaxPool2d padding > kernel / 2)
        raise LayerParameterError(f"{where}: {exc}") from None


class _Refused(Exception):
    """Internal: an unsupported module or option (turned into LayerParameterError by _convert)."""


def _convert_unchecked(module: Any, dtype: np.dtype[Any]) -> Layer:
    torch = _import_torch()
    nn = torch.nn
    kind = type(module)

    def refuse(reason: str) -> _Refused:
        return _Refused(reason)

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
        if _pair(module.padding) != (0, 0):
            raise refuse(
                f"padding={module.padding!r} is not supported (only 0: lrp_ref's AvgPool2d has no padding, "
                "so count_include_pad never matters)"
            )
        if module.ceil_mode:
            raise refuse("ceil_mode=True is not supported (lrp_ref pools in floor mode)")
        if module.divisor_override is not None:
            raise refuse(f"divisor_override={module.divisor_override!r} is not supported (only None)")
        stride = module.stride if module.stride is not None else module.kernel_size
        return AvgPool2d(_pair(module.kernel_size), _pair(stride), dtype=dtype)
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


def from_torch(module: Any, dtype: DTypeLike = np.float64) -> Sequential:
    """Convert a ``torch.nn.Sequential`` into an :class:`lrp_ref.Sequential`.

    Parameters
    ----------
    module : torch.nn.Sequential
        Its children may be ``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``,
        ``AvgPool2d``, ``Flatten`` or nested ``Sequential`` containers (flattened,
        in order); see the module docstring for the supported options.
        Parameters of any floating dtype and device are copied (via float64,
        so float32 weights convert exactly).
    dtype : float64 (default) or float32
        dtype of the lrp_ref model.

    Returns
    -------
    Sequential
        The same function as ``module`` in inference mode, with one lrp_ref layer per leaf module.

    Raises
    ------
    TypeError
        If ``module`` is not a ``torch.nn.Sequential``.
    LayerParameterError
        For an unsupported module or option, naming its position among the
        flattened leaves, its dotted name, its type and what is supported;
        also if ``module`` has no layers.
    ImportError
        If PyTorch is not installed.
    """
    torch = _import_torch()
    dt = check_dtype(dtype)
    if type(module) is not torch.nn.Sequential:
        raise TypeError(f"from_torch converts a torch.nn.Sequential; got {type(module).__module__}."
                        f"{type(module).__qualname__}")
    leaves = _leaves(module, "")
    if not leaves:
        raise LayerParameterError("from_torch: the torch.nn.Sequential has no layers")
    return Sequential([_convert(i, name, child, dt) for i, (name, child) in enumerate(leaves)])


def to_torch(model: Sequential) -> Any:
    """Convert an :class:`lrp_ref.Sequential` into a ``torch.nn.Sequential`` with float64 parameters.

    The reverse of :func:`from_torch`, for tests and cross-checks: layer ``i``
    of ``model`` becomes child ``str(i)`` of the result.  The result is in
    evaluation mode; its parameters are float64 whatever the dtype of
    ``model``, so feed it float64 inputs.

    Parameters
    ----------
    model : Sequential

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    LayerParameterError
        For a layer PyTorch cannot express: an ``AvgPool2d`` whose window
        weights were modified (not the average ``1 / (kh kw)``).
    TypeError
        If ``model`` is not an :class:`lrp_ref.Sequential`, or a layer is of an unknown type.
    ImportError
        If PyTorch is not installed.
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(model, Sequential):
        raise TypeError(f"to_torch converts an lrp_ref.Sequential; got {type(model).__name__}")

    def tensor(a: NDArray[Any]) -> Any:
        return nn.Parameter(torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64))

    modules = []
    for i, layer in enumerate(model):
        m: Any
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
        elif isinstance(layer, ReLU):
            m = nn.ReLU()
        elif isinstance(layer, Flatten):
            m = nn.Flatten()
        else:
            raise TypeError(f"layer {i}: to_torch does not know {type(layer).__name__}")
        modules.append(m)
    return nn.Sequential(*modules).eval()
