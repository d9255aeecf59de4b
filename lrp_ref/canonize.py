r"""Canonization: rewrite a model into an equivalent one that LRP explains better.

A batch norm right after a Dense or Conv2d layer is an affine map applied to
that layer's output, so the two compose into one layer of the same kind
(Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview",
Sec. 10.3; zennit's ``SequentialMergeBatchNorm``).  With the batch norm's scale
``s_o = gamma_o / sqrt(var_o + eps)``, for every output channel ``o``:

.. math:: w'_{o,\dots} = s_o\, w_{o,\dots}, \qquad b'_o = (b_o - \mu_o)\, s_o + \beta_o

Rules then see one linear layer whose weights already carry the
normalisation, instead of a linear layer and a per-channel affine layer with
its own bias share.  The forward pass is unchanged up to rounding (1e-12
relative in float64).  Unlike zennit's ``MergeBatchNorm``, nothing stays
behind: zennit leaves an identity batch norm that still divides by
``sqrt(1 + eps)``, so its canonized model differs from the original by about
``eps / 2`` per batch norm.

:func:`merge_batchnorm` merges one pair; :func:`canonize` merges every pair of
a :class:`~lrp_ref.graph.Sequential` or :class:`~lrp_ref.graph.Graph`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .errors import ArgumentError, ShapeError
from .graph import Graph, Node, Sequential
from .layers import BatchNorm, BatchNorm1d, BatchNorm2d, Conv2d, Dense, Layer

__all__ = ["canonize", "merge_batchnorm", "merges_into"]


def merges_into(linear: Layer, batchnorm: Layer) -> bool:
    """True if ``batchnorm`` can be merged into ``linear``: Dense then BatchNorm1d, or Conv2d then BatchNorm2d.

    The channel counts are not checked here (:func:`merge_batchnorm` refuses a mismatch).
    """
    return (isinstance(linear, Dense) and isinstance(batchnorm, BatchNorm1d)) or (
        isinstance(linear, Conv2d) and isinstance(batchnorm, BatchNorm2d)
    )


def merge_batchnorm(linear: Dense | Conv2d, batchnorm: BatchNorm) -> Dense | Conv2d:
    r"""The one layer computing ``batchnorm(linear(a))``: ``w' = s w``, ``b' = (b - mean) s + beta`` per output channel.

    ``s = gamma / sqrt(running_var + eps)``.  The merged parameters are
    computed in float64 and stored in the linear layer's dtype; stride,
    padding, dilation and groups are kept.  The merged layer always has a
    bias (``b = 0`` if ``linear`` had none).

    Parameters
    ----------
    linear : Dense (out, in) or Conv2d (out, in/groups, kh, kw)
    batchnorm : BatchNorm1d after a Dense, BatchNorm2d after a Conv2d, with ``C = out``

    Raises
    ------
    ArgumentError
        If the pair is not Dense + BatchNorm1d or Conv2d + BatchNorm2d.
    ShapeError
        If the batch norm's channel count is not the linear layer's output count.
    """
    if not merges_into(linear, batchnorm):
        raise ArgumentError(f"merge_batchnorm expects a Dense then a BatchNorm1d, or a Conv2d then a BatchNorm2d; "
                            f"got {_name(linear)} then {_name(batchnorm)}")
    assert isinstance(batchnorm, BatchNorm)
    n_out = int(linear.weight.shape[0])
    if batchnorm.num_features != n_out:
        raise ShapeError(f"{batchnorm.describe()} cannot follow {linear.describe()}: it normalises "
                         f"{batchnorm.num_features} channels, the layer has {n_out} outputs")
    gamma, beta, mean, var = (np.asarray(getattr(batchnorm, key), dtype=np.float64)
                              for key in ("gamma", "beta", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + batchnorm.eps)
    w = np.asarray(linear.weight, dtype=np.float64)
    b = np.zeros(n_out) if linear.bias is None else np.asarray(linear.bias, dtype=np.float64)
    weight = w * scale.reshape(-1, *(1,) * (w.ndim - 1))
    bias = (b - mean) * scale + beta
    dtype = linear.dtype
    return replace(linear, weight=weight.astype(dtype), bias=bias.astype(dtype))


def canonize(model: Graph) -> Graph:
    """An equivalent model in which every batch norm right after a Dense or Conv2d layer is merged into it.

    A :class:`~lrp_ref.layers.BatchNorm1d` directly after a ``Dense`` layer and a
    :class:`~lrp_ref.layers.BatchNorm2d` directly after a ``Conv2d`` layer
    (nothing in between) become one layer (:func:`merge_batchnorm`); so does
    a batch norm right after one just merged, so that ``canonize`` of a
    canonized model changes nothing.  In a graph, the layer's output must
    feed the batch norm only (a ResNet's ``conv -> bn``; a shortcut reading
    the convolution's raw output would change).  Any other batch norm stays
    as it is, an affine layer that the linear rules handle.

    The model's metadata is kept, and ``metadata["canonized"]`` lists the
    merged batch norms (each into the layer before it): their indices in a
    :class:`~lrp_ref.graph.Sequential`, their node names in a graph.  The key
    is absent if nothing was merged.

    Parameters
    ----------
    model : Sequential or Graph

    Returns
    -------
    Sequential or Graph (the kind of ``model``)
        Forward equal to ``model``'s up to rounding (1e-12 relative in float64).
    """
    if not isinstance(model, Graph):
        raise ArgumentError(f"canonize expects an lrp_ref.Sequential or Graph; got {type(model).__name__}")
    readers: dict[str, int] = {}
    for node in model.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    kept: dict[str, Node] = {}  # by name, in order; a merged layer keeps the name of the linear node
    renamed: dict[str, str] = {}  # merged batch norm -> the node now computing its output
    merged: list[Any] = []
    for i, node in enumerate(model.nodes):
        inputs = tuple(renamed.get(name, name) for name in node.inputs)
        before = kept.get(inputs[0]) if len(inputs) == 1 else None
        if before is not None and readers.get(node.inputs[0]) == 1 and merges_into(before.layer, node.layer):
            try:
                layer = merge_batchnorm(before.layer, node.layer)  # type: ignore[arg-type]
            except ShapeError as exc:
                where = f"layer {i}" if isinstance(model, Sequential) else f"node {node.name!r}"
                raise ShapeError(f"{where} ({type(node.layer).__name__}): {exc}") from None
            kept[before.name] = Node(before.name, layer, before.inputs)
            renamed[node.name] = before.name
            merged.append(i if isinstance(model, Sequential) else node.name)
        else:
            kept[node.name] = Node(node.name, node.layer, inputs)
    metadata = dict(model.metadata)
    if merged:
        metadata["canonized"] = merged
    if isinstance(model, Sequential):
        return Sequential([node.layer for node in kept.values()], metadata)
    return Graph(list(kept.values()), metadata)


def _name(layer: Any) -> str:
    return layer.describe() if isinstance(layer, Layer) else type(layer).__name__
