"""A Keras model configuration (``config.json`` / ``model_config``) as a list of layer calls (for :mod:`lrp_ref.keras`).

Sequential models are a chain.  Functional models list, per layer, the calls
("inbound nodes") with the tensors each reads: Keras 2 writes a call as
``[[layer, node, tensor, kwargs], ...]``, Keras 3 as ``{"args": [...],
"kwargs": {...}}`` with tensors ``{"class_name": "__keras_tensor__", "config":
{"keras_history": [layer, node, tensor]}}``.  Tensor ``t`` of call ``k`` of
layer ``L`` is named ``"L:k:t"``; the calls are returned in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._keras_layers import Call
from .errors import ModelFormatError

_SPATIAL = ("Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
            "ZeroPadding2D")


@dataclass(frozen=True)
class KerasModel:
    """What :func:`parse_model` reads from a configuration."""

    kind: str  # "Sequential" or "functional"
    channels_last: bool
    input: str
    input_shape: tuple[int, ...]  # lrp_ref's layout
    calls: tuple[Call, ...]
    output: str


def _refuse(why: str) -> ModelFormatError:
    return ModelFormatError(f"from_keras: {why}")


def _entry(entry: Any, i: int) -> tuple[str, str, dict[str, Any]]:
    """(name, class name, config) of the i-th entry of the configuration's ``layers``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise _refuse(f"layer entry {i} is not an object with a 'class_name'")
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise _refuse(f"layer entry {i} ({entry['class_name']}) has no 'config' object")
    name = entry.get("name", cfg.get("name"))
    if not isinstance(name, str) or not name:
        raise _refuse(f"layer entry {i} ({entry['class_name']}) has no name")
    return name, entry["class_name"], cfg


def _batch_shape(cfg: dict[str, Any]) -> Any:
    return cfg.get("batch_shape", cfg.get("batch_input_shape"))


def parse_model(config: dict[str, Any], input_shape: Any = None) -> KerasModel:
    """The layer calls of a Keras model configuration, in topological order."""
    cls, top = config.get("class_name"), config.get("config")
    if not isinstance(top, dict) or not isinstance(top.get("layers"), list):
        raise _refuse(f"the configuration of {cls!r} lists no 'layers'; expected a Sequential or functional model")
    entries = [_entry(e, i) for i, e in enumerate(top["layers"])]
    formats: set[str] = {str(c.get("data_format")) for _, k, c in entries
                         if k in _SPATIAL and c.get("data_format") is not None}
    if len(formats) > 1:
        raise _refuse(f"the layers mix data formats {sorted(formats)}; from_keras imports models with one")
    if formats - {"channels_last", "channels_first"}:
        raise _refuse(f"unknown data_format {formats}; expected 'channels_last' or 'channels_first'")
    channels_last = formats != {"channels_first"}
    if cls == "Sequential":
        shape, calls, output = _sequential(top, entries, config)
        kind = "Sequential"
    elif cls in ("Functional", "Model"):
        shape, calls, output = _functional(top, entries, config)
        kind = "functional"
    else:
        raise _refuse(f"the model's class is {cls!r}; from_keras imports Sequential and functional models "
                      "(subclassed models have no configuration to read)")
    keras_shape = _shape(shape if input_shape is None else [None, *input_shape], input_shape is not None)
    lrp_shape = (keras_shape[2], keras_shape[0], keras_shape[1]) if len(keras_shape) == 3 and channels_last \
        else keras_shape
    first = "input" if cls == "Sequential" else _functional_input(top)
    return KerasModel(kind, channels_last, first, lrp_shape, tuple(calls), output)


def _shape(shape: Any, given: bool) -> tuple[int, ...]:
    where = "input_shape" if given else "the model's input shape"
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise _refuse(f"{where} is {shape!r}; expected (batch, ...) with one sample's sizes (pass input_shape=)")
    sizes = list(shape[1:])
    if any(s is None for s in sizes):
        raise _refuse(f"{where} {tuple(sizes)} has unknown sizes; pass input_shape=(...) in Keras's layout, "
                      "e.g. (32, 32, 3)")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 2**16 for s in sizes) \
            or len(sizes) > 3:
        raise _refuse(f"{where} {tuple(sizes)} must be 1 to 3 positive ints (features, or H, W, C)")
    return tuple(sizes)


def _sequential(top: dict[str, Any], entries: list[tuple[str, str, dict[str, Any]]],
                config: dict[str, Any]) -> tuple[Any, list[Call], str]:
    shape = None
    for _, _, c in entries[:1]:
        shape = _batch_shape(c)
    if shape is None:
        shape = top.get("build_input_shape")
    if shape is None and isinstance(config.get("build_config"), dict):
        shape = config["build_config"].get("input_shape")
    calls, tensor = [], "input"
    for i, (name, k, c) in enumerate(entries):
        if k == "InputLayer":
            if i:
                raise _refuse(f"layer {name!r} (InputLayer) is not the first layer")
            continue
        calls.append(Call(name, k, c, (tensor,), f"{name}:0:0"))
        tensor = f"{name}:0:0"
    if not calls:
        raise _refuse("the Sequential model has no layers")
    return shape, calls, tensor


def _refs(value: Any, where: str) -> list[str]:
    """The tensors named in a list of call arguments (Keras 2 or Keras 3 form)."""
    out: list[str] = []
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        hist = value.get("config", {}).get("keras_history") if isinstance(value.get("config"), dict) else None
        if not (isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str)):
            raise _refuse(f"{where}: a tensor without a valid keras_history")
        out.append(f"{hist[0]}:{hist[1]}:{hist[2]}")
    elif isinstance(value, list):
        for v in value:
            out += _refs(v, where)
    else:
        raise _refuse(f"{where}: an argument that is not a tensor ({str(value)[:60]}); only layers applied to "
                      "tensors are supported")
    return out


def _node_inputs(node: Any, where: str) -> list[str]:
    if isinstance(node, dict):  # Keras 3
        kwargs = node.get("kwargs", {})
        if isinstance(kwargs, dict) and any(v not in (None, False, True) for v in kwargs.values()):
            raise _refuse(f"{where}: keyword arguments {sorted(kwargs)} are not supported")
        return _refs(node.get("args", []), where)
    if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        refs = []
        for ref in node:
            if not (isinstance(ref, list) and len(ref) >= 3 and isinstance(ref[0], str)):
                raise _refuse(f"{where}: an inbound reference {str(ref)[:60]} is not [layer, node, tensor, ...]")
            refs.append(f"{ref[0]}:{ref[1]}:{ref[2]}")
        return refs
    raise _refuse(f"{where}: an inbound node that is neither a list (Keras 2) nor an object (Keras 3)")


def _endpoints(value: Any, what: str) -> list[str]:
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)
                                              and all(isinstance(i, int) for i in v[1:]) for v in value):
        raise _refuse(f"the configuration's {what} is {str(value)[:80]}; expected [[layer, node, tensor], ...]")
    return [f"{v[0]}:{v[1]}:{v[2]}" for v in value]


def _functional_input(top: dict[str, Any]) -> str:
    inputs = _endpoints(top.get("input_layers"), "input_layers")
    if len(inputs) != 1:
        raise _refuse(f"the model has {len(inputs)} inputs; lrp_ref models take one")
    return inputs[0]


def _functional(top: dict[str, Any], entries: list[tuple[str, str, dict[str, Any]]],
                config: dict[str, Any]) -> tuple[Any, list[Call], str]:
    first = _functional_input(top)
    outputs = _endpoints(top.get("output_layers"), "output_layers")
    if len(outputs) != 1:
        raise _refuse(f"the model has {len(outputs)} outputs; lrp_ref explains one")
    shape, pending = None, []
    for (name, k, c), raw in zip(entries, top["layers"]):
        nodes = raw.get("inbound_nodes", [])
        if k == "InputLayer":
            if f"{name}:0:0" == first:
                shape = _batch_shape(c)
            continue
        if not isinstance(nodes, list) or not nodes:
            raise _refuse(f"layer {name!r} ({k}) is never called (no inbound_nodes)")
        for j, node in enumerate(nodes):
            where = f"layer {name!r} ({k})"
            pending.append(Call(name, k, c, tuple(_node_inputs(node, where)), f"{name}:{j}:0"))
    # topological order, keeping the configuration's order where it is free
    done, calls = {first}, []
    while pending:
        ready = next((call for call in pending if all(t in done for t in call.inputs)), None)
        if ready is None:
            call = pending[0]
            missing = [t for t in call.inputs if t not in done]
            raise _refuse(f"{call.where} reads {missing[0]!r}, which no layer computes from the model input "
                          "(a second input, or a layer outside the model)")
        pending.remove(ready)
        calls.append(ready)
        done.add(ready.output)
    return shape, calls, outputs[0]
