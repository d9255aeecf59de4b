"""The JSON API of the demo, without HTTP: check a request, explain it, describe the result.

Everything the server answers is computed here, so that it can be read (and
tested) apart from the transport:

* :class:`Demo` holds the models, the rule list and the shipped digits.  It is
  built once at start-up and only read afterwards: the models are immutable
  and :func:`lrp_ref.explain` keeps no state, so one ``Demo`` serves any number
  of threads at once.
* :meth:`Demo.explain` takes the decoded JSON body of ``POST /api/explain``,
  refuses anything malformed with a :class:`RequestError` (one line naming
  what was expected and what was found), and returns the JSON-ready answer.

Request (JSON object; ``model``, ``image`` and ``rule`` are required)::

    model            a name from GET /api/models ("cnn", "mlp", "resnet", or one added with --model)
    image            28 rows of 28 raw pixel values 0..255 (numbers; fractions allowed)
    rule             a rule specification as lrp-ref takes it (GET /api/rules lists the page's nine,
                     those of compare-rules; any catalog specification such as "epsilon:epsilon=0.1" works)
    target           the class to explain, or null for the predicted one
    layer            optional boundary index t (0 the input, i + 1 the output of node i): the answer then
                     also holds that boundary's full relevance ("layer_relevance")
    start_at, neuron, channel, start_relevance
                     optional: passed on to lrp_ref.explain to start the sweep inside the model

Answer::

    prediction, target, scores (logits), probabilities (softmax), score (the start relevance f(x)),
    relevance (28 x 28), layers (per boundary: index, name, shape, sum, positive, negative, max_abs,
    channels = per-channel sums or null), ledger (start, input_relevance, absorbed, balanced, entries:
    index, layer, rule, r_out, r_in, absorbed, residual), note (why a composite is not what its name
    says on this model, or null), rule, label, model

The image is explained exactly as received: 28 x 28 raw pixel values 0..255,
mapped to model inputs by the model's own ``input_scale``/``input_offset``
(as the command line does).  The MNIST-style preprocessing of a drawing (fit
the strokes into 20 x 20, centre by centre of mass) happens in the page
(``static/app.js``), which also shows the 28 x 28 image it sends.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import catalog, io
from .._cli_inputs import CliError, bounds, load_samples, preprocess
from .._cli_rules import unused_parts
from ..canonize import canonize
from ..composites import Composite
from ..errors import ConservationError, LrpRefError
from ..explain import Explanation, explain
from ..graph import Graph
from ..layers import BatchNorm
from ..rules import Rule

__all__ = ["RULES", "Demo", "ModelEntry", "RequestError", "softmax"]

Array = NDArray[Any]

#: the rules the page shows side by side: the same list as ``lrp-ref compare-rules`` (label, specification)
RULES: tuple[tuple[str, str], ...] = catalog.SEED_COMPARISON

#: the fields of a ``POST /api/explain`` body; ``image``, ``model`` and ``rule`` are required
FIELDS = ("model", "image", "rule", "target", "start_at", "neuron", "channel", "start_relevance", "layer")
#: the fields that start the backward sweep inside the model (passed on to :func:`lrp_ref.explain`)
START_FIELDS = ("start_at", "neuron", "channel", "start_relevance")
RAW_LOW, RAW_HIGH = 0.0, 255.0


class RequestError(Exception):
    """A request the API refuses (HTTP 400); the message is one line naming expected and found."""


def softmax(z: Array) -> Array:
    """``exp(z_k) / sum_j exp(z_j)``, computed after subtracting ``max z`` (no overflow)."""
    e = np.exp(z - np.max(z))
    return e / e.sum()


@dataclass(frozen=True)
class ModelEntry:
    """A model the demo offers: its name, file, the (canonized) model and what canonization merged."""

    name: str
    path: Path
    model: Graph
    merged: int
    shape: tuple[int, int]  # (H, W) of the raw image

    def describe(self) -> dict[str, Any]:
        meta = self.model.metadata
        return {
            "name": self.name,
            "file": str(self.path),
            "nodes": [self.model.label(i) for i in range(len(self.model))],
            "boundaries": _boundary_names(self.model),
            "n_outputs": int(self.model.shapes(tuple(meta["input_shape"]))[-1][0]),
            "class_names": [str(c) for c in meta.get("class_names", [])],
            "test_accuracy": meta.get("test_accuracy"),
            "canonized": self.merged,
        }


def _boundary_names(model: Graph) -> list[str]:
    """Names of the tensors of the forward sweep: the input, then the output of every node."""
    return ["input"] + [model.label(i) for i in range(len(model))]


def load_model(name: str, path: Path) -> ModelEntry:
    """Read an lrp_ref model for the demo: one-channel 28 x 28 input, canonized if it has batch norms.

    Raises :class:`~lrp_ref._cli_inputs.CliError` (one line) for a file that
    cannot be read or a model the page cannot feed.
    """
    try:
        model = io.load(path)
    except (LrpRefError, OSError) as exc:
        raise CliError(f"--model {path}: {exc}") from None
    shape = model.metadata.get("input_shape")
    if shape is None or tuple(int(n) for n in shape) not in {(1, 28, 28), (28, 28)}:
        raise CliError(f"--model {path}: the demo draws 28 x 28 one-channel images; the model declares input_shape "
                       f"{None if shape is None else tuple(int(n) for n in shape)}, expected (1, 28, 28)")
    out = model.shapes(tuple(int(n) for n in shape))[-1]
    if len(out) != 1:
        raise CliError(f"--model {path}: the demo explains class scores (N, n_classes); the model's output has "
                       f"shape {out} per sample")
    merged = 0
    if any(isinstance(model[i], BatchNorm) for i in range(len(model))):
        model = canonize(model)  # as `make demo` explains the ResNet: rules see one linear layer, not two
        merged = len(model.metadata.get("canonized", []))
    return ModelEntry(name, path, model, merged, (28, 28))


@dataclass
class Demo:
    """The models, rules and shipped digits of one server (read-only once built)."""

    models: dict[str, ModelEntry]
    samples: tuple[Array, Array] | None = None  # raw images (N, 28, 28) and labels (N,)
    samples_file: str | None = None
    _rules: dict[str, str] = field(default_factory=lambda: {spec: label for label, spec in RULES})

    @classmethod
    def from_files(cls, models: dict[str, Path], samples: Path | None) -> Demo:
        """Load every model and the samples file (None or a missing file: no shipped digits)."""
        if not models:
            raise CliError("no model to serve: give --model PATH (an lrp_ref HDF5 model with 28 x 28 input)")
        entries = {name: load_model(name, path) for name, path in models.items()}
        loaded = None
        if samples is not None and samples.is_file():
            images, labels = load_samples(samples)
            if images.shape[1:] != (28, 28):
                raise CliError(f"--samples {samples}: images of shape {images.shape[1:]}, expected (28, 28)")
            loaded = (images, labels)
        return cls(entries, loaded, None if loaded is None else str(samples))

    # ------------------------------------------------------------------ GET endpoints

    def describe_models(self) -> dict[str, Any]:
        # start_at: whether this lrp_ref can start the sweep inside a model (the page offers it only then)
        return {"models": [entry.describe() for entry in self.models.values()],
                "start_at": "start_at" in inspect.signature(explain).parameters}

    def describe_rules(self) -> dict[str, Any]:
        return {"rules": [{"name": spec, "label": label} for label, spec in RULES]}

    def describe_samples(self) -> dict[str, Any]:
        if self.samples is None:
            return {"samples": [], "file": None}
        images, labels = self.samples
        return {
            "file": self.samples_file,
            "samples": [{"index": k, "label": int(labels[k]), "image": images[k].astype(int).tolist()}
                        for k in range(len(images))],
        }

    # ------------------------------------------------------------------ POST /api/explain

    def explain(self, body: Any) -> dict[str, Any]:
        """Answer one ``POST /api/explain`` body (already decoded from JSON); see the module docstring."""
        if not isinstance(body, dict):
            raise RequestError(f"expected a JSON object {{\"model\": ..., \"image\": ..., \"rule\": ...}}, "
                               f"found {_json_type(body)}")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected fields: "
                               f"{', '.join(FIELDS)}")
        for name in ("model", "image", "rule"):
            if name not in body:
                raise RequestError(f"missing field {name!r} (required: model, image, rule)")
        entry = self._model(body["model"])
        spec, rules, note = self._rule(body["rule"], entry.model)
        raw = image_array(body["image"], entry.shape)
        target = _optional_int(body.get("target"), "target")
        layer = _optional_int(body.get("layer"), "layer")
        if layer is not None and not 0 <= layer <= len(entry.model):
            raise RequestError(f"layer must be a boundary index 0..{len(entry.model)} (0 the input, i + 1 the output "
                               f"of node i); found {layer}")
        start = {name: _start_value(name, body[name]) for name in START_FIELDS if body.get(name) is not None}
        x = preprocess(raw.reshape(1, *entry.model.metadata["input_shape"]), entry.model)
        e = _run(entry.model, x, rules, target, start)
        if layer is not None and layer >= len(e.layers):
            raise RequestError(f"layer {layer} lies above the start of the sweep (start_at={body['start_at']!r}); "
                               f"expected a boundary 0..{len(e.layers) - 1}")
        return describe(entry, spec, self._rules.get(spec, spec), e, note, layer)

    def _model(self, name: Any) -> ModelEntry:
        """A model by its name, or by its file's stem (``mnist_cnn`` for ``cnn``)."""
        if isinstance(name, str):
            if name in self.models:
                return self.models[name]
            for entry in self.models.values():
                if name == entry.path.stem:
                    return entry
        raise RequestError(f"unknown model {name!r}; expected one of: {', '.join(self.models)}")

    def _rule(self, spec: Any, model: Graph) -> tuple[str, Rule | Composite, str | None]:
        if not isinstance(spec, str):
            raise RequestError(f"rule must be a string such as {RULES[0][1]!r}; found {_json_type(spec)}")
        spec = {label: name for label, name in RULES}.get(spec, spec)  # a label of GET /api/rules names its rule
        try:
            rules = catalog.from_spec(spec, bounds(model))
        except LrpRefError as exc:
            raise RequestError(f"rule {spec!r}: {exc}") from None
        note = unused_parts(rules, model) if isinstance(rules, Composite) else None
        return spec, rules, note


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return f"{names.get(type(value), type(value).__name__)} ({_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer or null; found {_json_type(value)}")
    return value


def _flat(value: Any) -> list[Any]:
    """The leaves of nested JSON arrays (a ragged nesting keeps its inner lists as leaves, refused below)."""
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flat(item)]
    return [value]


def _start_value(name: str, value: Any) -> Any:
    """A start field as :func:`lrp_ref.explain` takes it (one sample; the batch axis is added here).

    ``start_at``: a node index or name.  ``channel``: an int.  ``neuron``: a
    flat index (int), an index tuple (array of ints) or a boolean mask
    (nested arrays of true/false of the node's output shape).
    ``start_relevance``: nested arrays of finite numbers of the node's output
    shape.  :func:`lrp_ref.explain` checks the ranges and shapes.
    """
    if name == "start_at":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise RequestError(f"start_at must be a node index or name; found {_json_type(value)}")
        return value
    if name == "channel":
        return _optional_int(value, name)
    if name == "neuron":
        if not isinstance(value, list):
            return _optional_int(value, name)
        leaves = _flat(value)
        if leaves and all(isinstance(v, bool) for v in leaves):
            return _rectangular(value, name, bool)
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not value or not ints:
            raise RequestError(f"neuron must be a flat index, an array of ints (an index tuple such as [5, 2, 2]) "
                               f"or a boolean mask; found {_short(value)}")
        return tuple(value)
    leaves = _flat(value) if isinstance(value, list) else [value]
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in leaves):
        raise RequestError(f"{name} must be nested arrays of numbers (the start node's output shape); "
                           f"found {_short(value)}")
    numbers = _rectangular(value, name, np.float64)
    if not np.all(np.isfinite(numbers)):
        raise RequestError(f"{name} must hold finite numbers; found NaN or infinity")
    return numbers[None]  # one sample: (1, *shape)


def _rectangular(value: list[Any], name: str, dtype: Any) -> Array:
    try:
        return np.array(value, dtype=dtype)
    except ValueError:
        raise RequestError(f"{name}: the nested arrays are ragged (rows of different lengths)") from None


def image_array(image: Any, shape: tuple[int, int]) -> Array:
    """The ``image`` field as a float64 array ``shape``, every value a finite raw pixel value 0..255."""
    h, w = shape
    expected = f"{h} rows of {w} raw pixel values 0..255 (a list of lists)"
    if not isinstance(image, list):
        raise RequestError(f"image: expected {expected}; found {_json_type(image)}")
    if image and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in image):
        raise RequestError(f"image: expected {expected}; found a flat list of {len(image)} numbers "
                           f"(send it as {h} rows of {w})")
    if len(image) != h:
        raise RequestError(f"image: expected {expected}; found {len(image)} rows")
    for r, row in enumerate(image):
        if not isinstance(row, list):
            raise RequestError(f"image row {r}: expected a list of {w} numbers; found {_json_type(row)}")
        if len(row) != w:
            raise RequestError(f"image row {r}: expected {w} values; found {len(row)}")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RequestError(f"image[{r}][{c}]: expected a number 0..255; found {_json_type(v)}")
            if not math.isfinite(v):
                raise RequestError(f"image[{r}][{c}]: expected a finite number 0..255; found {v}")
            if not RAW_LOW <= v <= RAW_HIGH:
                raise RequestError(f"image[{r}][{c}]: expected a raw pixel value 0..255; found {v}")
    arr = np.asarray(image, dtype=np.float64)
    if 0 < arr.max() <= 1:  # as the command line: data scaled to [0, 1] is not silently taken as a dark image
        raise RequestError(f"image: every value lies in [0, 1] (largest {arr.max():g}); expected raw pixel values "
                           "0..255: multiply data scaled to [0, 1] by 255")
    return arr


def _run(model: Graph, x: Array, rules: Rule | Composite, target: int | None, start: dict[str, Any]) -> Explanation:
    """:func:`lrp_ref.explain`; the start fields are passed on only when given."""
    if start:
        accepted = inspect.signature(explain).parameters
        missing = [name for name in start if name not in accepted]
        if missing:
            raise RequestError(f"{', '.join(missing)}: this version of lrp_ref.explain cannot start the sweep inside "
                               f"the model (it takes: {', '.join(accepted)})")
    try:
        return explain(model, x, rules, target=target, **start)
    except LrpRefError as exc:
        raise RequestError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _floats(a: Array) -> list[Any]:
    return np.asarray(a, dtype=np.float64).tolist()


def _layer_summary(t: int, name: str, R: Array) -> dict[str, Any]:
    """One boundary's relevance in a few numbers: total, positive and negative parts, per-channel totals."""
    r = R[0]
    channels = _floats(r.reshape(r.shape[0], -1).sum(axis=1)) if r.ndim == 3 else None
    return {
        "index": t, "name": name, "shape": list(r.shape),
        "sum": float(r.sum()), "positive": float(r[r > 0].sum()), "negative": float(r[r < 0].sum()),
        "max_abs": float(np.abs(r).max()), "channels": channels,
    }


def describe(entry: ModelEntry, spec: str, label: str, e: Explanation, note: str | None,
             layer: int | None) -> dict[str, Any]:
    """The JSON answer for one explanation of one sample."""
    model = entry.model
    scores = e.output[0]
    names = _boundary_names(model)
    try:
        e.ledger.check_balance()
        balanced = True
    except ConservationError:
        balanced = False
    ledger = e.ledger
    answer: dict[str, Any] = {
        "model": entry.name,
        "rule": spec,
        "label": label,
        "prediction": int(np.argmax(scores)),
        "target": None if e.target is None else int(e.target[0]),
        "scores": _floats(scores),
        "probabilities": _floats(softmax(scores)),
        "score": float(e.score[0]),
        "relevance": _floats(e.relevance[0].reshape(entry.shape)),
        "layers": [_layer_summary(t, names[t], R) for t, R in enumerate(e.layers)],
        "ledger": {
            "start": float(ledger.start[0]),
            "input_relevance": float(ledger.input_relevance[0]),
            "absorbed": float(ledger.absorbed[0]),
            "balanced": balanced,
            "entries": [{"index": b.index, "layer": b.layer, "rule": b.rule, "r_out": float(b.r_out[0]),
                         "r_in": float(b.r_in[0]), "absorbed": float(b.absorbed[0]),
                         "residual": float(b.residual[0])} for b in ledger.entries],
        },
        "note": note,
        "start_at": getattr(e, "start_at", None),
        "explained": getattr(e, "description", "the model output"),
    }
    if layer is not None:
        R = e.layers[layer][0]
        answer["layer_relevance"] = {"index": layer, "name": names[layer], "shape": list(R.shape),
                                     "values": _floats(R)}
    return answer
