"""Where the backward sweep of :func:`lrp_ref.explain` starts: an output neuron, or any neuron, channel or boundary.

The default start is at the model output (the target neuron's value, others
zero; the convention profile decides).  ``start_at`` moves it to the output
tensor of an intermediate node, and one of three selections gives the start
relevance there, for a batch of activations ``a`` of shape ``(N, *shape)``:

* ``neuron=k`` (flat index into ``shape``), ``neuron=(c, i, j)`` (an index
  tuple) or ``neuron=mask`` (a boolean array of ``shape``): the seed's recipe,
  "select one neuron ... keep all other inputs zero":
  ``R = a * [selected]``, the neuron's activation, every other entry zero;
* ``channel=c``: ``R = a * [entry in channel c]``, the whole channel;
* ``start_relevance=R``: an explicit array ``(N, *shape)``.

Only the start node and its ancestors (the nodes its output depends on) are
swept.  Every rule is linear in the relevance it receives (its denominators
depend on the activations only), so a channel's explanation is the sum of
its neurons' explanations, a mask's the sum of its neurons', and scaling
``start_relevance`` scales the result; with LRP-0 on a ReLU network the
input relevance is the gradient of the neuron's activation times the input.

This module resolves and checks the request before any work is done
(:func:`plan_start`) and turns it into the start relevance once the forward
sweep has run (:meth:`Start.relevance`).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import as_float_array, describe_value, is_int
from .errors import ArgumentError, ShapeError, TargetError
from .graph import INPUT, Graph, Sequential

__all__ = ["Start", "ancestors", "check_output_start", "node_index", "plan_start"]

Array = NDArray[Any]
Shape = tuple[int, ...]


def _where(model: Graph, i: int) -> str:
    """``layer 3 (Conv2d(...))`` in a Sequential, ``node 'relu1' (ReLU())`` in a graph."""
    if isinstance(model, Sequential):
        return f"layer {i} ({model[i].describe()})"
    return f"node {model.nodes[i].name!r} ({model[i].describe()})"


def node_index(model: Graph, start_at: Any) -> int:
    """The node whose output tensor ``start_at`` names: a node name, or a node index (``"3"`` or 3 in a chain)."""
    names = [node.name for node in model.nodes]
    if is_int(start_at):
        i = int(start_at)
        if not 0 <= i < len(model):
            raise TargetError(f"start_at={i} is not a node index of this model: it has nodes 0..{len(model) - 1}")
        return i
    if not isinstance(start_at, str):
        raise ArgumentError(f"start_at must be a node name (str) or a node index (int); got {describe_value(start_at)}")
    if start_at in names:
        return names.index(start_at)
    if start_at == INPUT:
        raise TargetError(f"start_at={INPUT!r} is the model input: there is no layer below it to propagate through; "
                          "name a node (its output tensor is the start)")
    close = difflib.get_close_matches(start_at, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listing = f"0..{len(model) - 1}" if isinstance(model, Sequential) else ", ".join(names)
    raise TargetError(f"start_at={start_at!r} names no node of this model; {hint}its nodes are {listing}")


def ancestors(model: Graph, top: int) -> frozenset[int]:
    """Node ``top`` and every node its output depends on (the nodes a sweep started at ``top`` reaches)."""
    found = {top}
    for i in range(top, -1, -1):
        if i in found:
            found.update(t - 1 for t in model.sources(i) if t > 0)
    return frozenset(found)


def _neuron_mask(neuron: Any, shape: Shape, where: str) -> tuple[Array, str]:
    """A boolean mask of ``shape`` selecting ``neuron``, and how to name the selection."""
    size = math.prod(shape)
    if is_int(neuron):
        k = int(neuron)
        if not 0 <= k < size:
            raise TargetError(f"neuron={k} is out of range for {where}: its output has shape {shape}, so a flat "
                              f"index must lie in [0, {size - 1}]")
        index: tuple[int, ...] = tuple(int(v) for v in np.unravel_index(k, shape))
    elif isinstance(neuron, tuple):
        if len(neuron) != len(shape) or not all(is_int(v) for v in neuron):
            raise TargetError(f"neuron={neuron!r}: an index tuple into the output of {where} needs {len(shape)} "
                              f"int(s), one per axis of its per-sample shape {shape}")
        index = tuple(int(v) for v in neuron)
        bad = [axis for axis, (v, n) in enumerate(zip(index, shape)) if not 0 <= v < n]
        if bad:
            raise TargetError(f"neuron={index} is out of range for {where}: its output has shape {shape} "
                              f"(axis {bad[0]} runs 0..{shape[bad[0]] - 1})")
    elif isinstance(neuron, np.ndarray) and neuron.dtype == np.bool_:
        if neuron.shape != shape:
            raise ShapeError(f"neuron mask must have the per-sample shape {shape} of the output of {where}; "
                             f"got shape {neuron.shape}")
        count = int(neuron.sum())
        if count == 0:
            raise TargetError(f"the neuron mask selects no neuron of {where} (all False)")
        return neuron.copy(), f"{count} neurons (a mask)" if count > 1 else "1 neuron (a mask)"
    else:
        raise ArgumentError(f"neuron must be a flat index (int), an index tuple or a boolean mask of shape {shape}; "
                            f"got {describe_value(neuron)}")
    mask = np.zeros(shape, dtype=bool)
    mask[index] = True
    flat = int(np.ravel_multi_index(index, shape))
    name = f"neuron {flat}" if len(shape) == 1 else f"neuron {index} (flat {flat})"
    return mask, name


def _channel_mask(channel: Any, shape: Shape, where: str) -> tuple[Array, str]:
    if len(shape) < 2:
        raise ShapeError(f"channel= selects a channel of a (C, H, W) tensor, but the output of {where} has shape "
                         f"{shape}; use neuron= to pick one of its entries")
    if not is_int(channel):
        raise ArgumentError(f"channel must be an int; got {describe_value(channel)}")
    c = int(channel)
    if not 0 <= c < shape[0]:
        raise TargetError(f"channel={c} is out of range for {where}: its output has {shape[0]} channels "
                          f"(shape {shape}), so channel must lie in [0, {shape[0] - 1}]")
    mask = np.zeros(shape, dtype=bool)
    mask[c] = True
    return mask, f"channel {c}"


@dataclass(frozen=True)
class Start:
    """A checked start at the output tensor of node ``node``.

    Exactly one of ``mask`` (a neuron or channel selection of the per-sample
    shape) and ``given`` (an explicit start relevance, already cast) is set.
    """

    node: int
    name: str
    description: str
    mask: Array | None
    given: Array | None

    def relevance(self, activations: list[Array]) -> Array:
        """The start relevance: the selected activations (others zero), or the given array."""
        if self.given is not None:
            return self.given
        assert self.mask is not None
        a = activations[self.node + 1]
        return np.where(self.mask, a, np.zeros((), dtype=a.dtype))


def check_output_start(neuron: Any, channel: Any, start_relevance: Any) -> None:
    """Refuse a neuron, channel or start relevance without ``start_at``."""
    given = [name for name, v in (("neuron", neuron), ("channel", channel), ("start_relevance", start_relevance))
             if v is not None]
    if given:
        raise ArgumentError(f"{given[0]}= selects the start at an intermediate boundary named by start_at=, which is "
                            "missing; give start_at=NODE (a node name, or a layer index of a Sequential). For an "
                            "output neuron use target=, for an output relevance output_relevance=")


def plan_start(model: Graph, x_shape: Shape, start_at: Any, neuron: Any, channel: Any, start_relevance: Any,
               target: Any, output_relevance: Any) -> Start:
    """Check a start at ``start_at`` against the model and the batch shape ``x_shape``; no forward pass yet."""
    if target is not None:
        raise ArgumentError("target selects an output neuron and start_at a neuron of an intermediate boundary; give "
                            "one of them (with start_at, pick the neuron by neuron= or channel=)")
    if output_relevance is not None:
        raise ArgumentError("output_relevance starts at the model output and start_at at an intermediate boundary; "
                            "with start_at, give start_relevance= instead")
    i = node_index(model, start_at)
    where = _where(model, i)
    given = [name for name, v in (("neuron", neuron), ("channel", channel), ("start_relevance", start_relevance))
             if v is not None]
    if len(given) != 1:
        found = f"got {' and '.join(given)}" if given else "got none of them"
        raise ArgumentError(f"start_at={start_at!r} needs exactly one of neuron=, channel= or start_relevance= "
                            f"(what to start from at the output of {where}); {found}")
    shape = tuple(model.shapes(x_shape[1:])[i + 1])
    name = model.nodes[i].name
    if start_relevance is not None:
        expected = (x_shape[0], *shape)
        R = as_float_array(start_relevance, "start_relevance", model.dtype)
        if R.shape != expected:
            raise ShapeError(f"start_relevance must have the shape {expected} of the output of {where} for this "
                             f"batch of {x_shape[0]}; got {R.shape}")
        return Start(i, name, f"the given start relevance at the output of {where}", None, R)
    if neuron is not None:
        mask, what = _neuron_mask(neuron, shape, where)
    else:
        mask, what = _channel_mask(channel, shape, where)
    activation = "its activation" if what.startswith("neuron ") or what.startswith("1 ") else "their activations"
    return Start(i, name, f"{what} of the output of {where}, start = {activation}", mask, None)
