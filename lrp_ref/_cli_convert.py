"""``lrp-ref convert IN OUT.h5``: a model from another framework, written in lrp_ref's HDF5 format, checked.

``IN`` is any format of :mod:`lrp_ref.formats` (an ONNX ``.onnx`` file, ...)
or a PyTorch state dict (``.pt`` / ``.pth``, read with
``torch.load(weights_only=True)``: nothing in it is executed) of a torchvision
architecture named by ``--arch``.  The command prints the model as
``lrp-ref info`` does and a forward check on a random input: the converted
model against the source framework (ONNX files: ONNX Runtime if it is
installed and can run the file, else ``onnx.reference.ReferenceEvaluator``,
the onnx package's NumPy implementation of the operators; state dicts: torch),
and always the written file, re-loaded, against the converted model
(identical outputs).  It writes ``OUT`` only if the first check passes
(exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import io
from ._cli_inputs import CliError
from .errors import LrpRefError
from .formats import format_of
from .graph import Graph, Sequential

__all__ = ["add_convert", "cmd_convert"]

Array = NDArray[Any]
STATE_DICT_SUFFIXES = (".pt", ".pth")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3,224,224; got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 3,224,224; got {text!r}")
    return shape


def _metadata_item(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: a number, comma-separated numbers (a per-channel vector), else text; class_names a list."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. input_scale=0.0039; got {text!r}")
    key, value = key.strip(), value.strip()
    if key == "class_names":
        return key, [name.strip() for name in value.split(",")]
    if key == "input_shape":
        return key, _shape(value)
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        return key, value
    if len(numbers) > 1:
        return key, np.array(numbers)
    return key, int(numbers[0]) if value.lstrip("+-").isdigit() else numbers[0]


def add_convert(sub: Any) -> None:
    """Register ``convert`` on the subparsers ``sub`` of ``lrp-ref``."""
    p = sub.add_parser("convert", help="write an ONNX file or a torchvision state dict (.pt) as an lrp_ref model, "
                                       "checking its forward", allow_abbrev=False)
    p.add_argument("source", metavar="IN", help="an ONNX file (.onnx), or a PyTorch state dict (.pt, .pth) with --arch")
    p.add_argument("out", metavar="OUT.h5", help="the lrp_ref model file to write")
    p.add_argument("--arch", help="the torchvision architecture of a state dict, e.g. resnet18, vgg11_bn "
                                  "(needs torch and torchvision)")
    p.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                   help="one sample's input shape: for a state dict (default 3,224,224) or an ONNX file with "
                        "symbolic sizes")
    p.add_argument("--set", action="append", default=[], type=_metadata_item, metavar="KEY=VALUE", dest="metadata",
                   help="metadata to store (repeatable): input_scale=0.0039 with input_offset=0 (model input = raw * "
                        "input_scale + input_offset), input_low=0, input_high=1, class_names=cat,dog, ...; numbers "
                        "and comma-separated numbers become numbers, anything else text")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="dtype of the written model")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input of the forward check (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(run=cmd_convert)


def _module(name: str) -> Any:
    """An optional dependency (importlib: the type checker must not need it installed)."""
    return importlib.import_module(name)


@dataclass(frozen=True)
class _Reference:
    """The source framework's forward, for the check: name, function of a batch, batch size, relative tolerance."""

    name: str
    forward: Callable[[Array], Array]
    batch: int
    rtol: float
    softmax: bool = False  # the reference's output is the softmax of the logits lrp_ref computes


def cmd_convert(args: argparse.Namespace) -> int:
    from .cli import print_model

    source, out = Path(args.source), Path(args.out)
    if not source.is_file():
        raise CliError(f"IN {source}: {'not a file' if source.exists() else 'no such file'}")
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise CliError(f"OUT {out}: lrp_ref writes HDF5; give a name ending in .h5")
    if out.exists() and not args.force:
        raise CliError(f"OUT {out}: exists (give --force to overwrite it)")
    reference: _Reference | None
    if source.suffix.lower() in STATE_DICT_SUFFIXES:
        model, reference = _from_state_dict(source, args)
    else:
        if args.arch:
            raise CliError(f"--arch {args.arch}: only for a PyTorch state dict (.pt); {source} is not one")
        model, reference = _from_file(source, args)
    model = model.astype(args.dtype)
    if args.metadata:  # checked by lrp_ref.save, which writes nothing if an entry breaks its rules
        model = _with_metadata(model, dict(args.metadata))
    print_model(f"{source} (converted)", model)
    shape = tuple(model.metadata["input_shape"])
    rng = np.random.default_rng(args.seed)

    print(f"forward check on a standard normal input of shape (N, {', '.join(map(str, shape))}), seed {args.seed}:")
    if reference is None:
        print("  no source framework to compare with; only the written file is checked")
    else:
        x = rng.normal(size=(reference.batch, *shape))
        ours = model.forward(x.astype(args.dtype))
        if reference.softmax:
            ours = np.exp(ours - ours.max(axis=1, keepdims=True))
            ours = ours / ours.sum(axis=1, keepdims=True)
        print(f"  running {reference.name.split(' (')[0]} on {len(x)} sample(s)...", flush=True)
        theirs = reference.forward(x)
        rtol = max(reference.rtol, 1e-5 if args.dtype == "float32" else 0.0)
        ok = _report(f"lrp_ref vs {reference.name}{' (after softmax)' if reference.softmax else ''}", ours, theirs,
                     rtol)
        if not ok:
            print(f"{out}: not written: the converted model does not compute what {reference.name} computes")
            return 1
    meta = {key: "; ".join(map(str, value)) for key, value in model.metadata.items() if key == "import_notes"}
    io.save(model, out, meta or None)
    # a large model (VGG in float64) may exceed load's default bound on the parameter bytes
    again = io.load(out, max_bytes=max(io.MAX_BYTES, 2 * model.n_parameters() * model.dtype.itemsize))
    x = rng.normal(size=(2, *shape)).astype(args.dtype)
    ok = _report(f"{out} re-loaded vs the converted model", again.forward(x), model.forward(x), 0.0)
    print(f"wrote {out}")
    return 0 if ok else 1


def _report(what: str, ours: Array, theirs: Array, rtol: float) -> bool:
    scale = float(np.abs(theirs).max()) or 1.0
    diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else np.inf
    ok = diff <= rtol * scale
    bound = "identical" if rtol == 0 else f"tolerance {rtol:g} x max|output| = {rtol * scale:.3g}"
    print(f"  {what}: max |difference| {diff:.3g} ({bound}): {'ok' if ok else 'FAILED'}")
    return ok


def _with_metadata(model: Graph, extra: Mapping[str, Any]) -> Graph:
    meta = {**model.metadata, **extra}
    return Sequential(model.layers, meta) if isinstance(model, Sequential) else Graph(model.nodes, meta)


# ----------------------------------------------------------------------------- model files (lrp_ref.formats)


def _from_file(source: Path, args: argparse.Namespace) -> tuple[Graph, _Reference | None]:
    from .cli import open_model

    fmt = format_of(source)
    if fmt.name != "ONNX":
        if args.input_shape:
            raise CliError(f"--input-shape: only for ONNX files and state dicts; {source} is {fmt.name}")
        return open_model(str(source), "IN"), None
    from .onnx import from_onnx

    try:
        model = from_onnx(source, input_shape=args.input_shape)
    except ImportError as exc:
        raise CliError(f"IN {source}: {exc}") from None
    except LrpRefError as exc:
        raise CliError(f"IN {exc}") from None
    return model, _onnx_reference(source, model)


def _onnx_reference(source: Path, model: Graph) -> _Reference:
    """ONNX Runtime on the file if it is installed and can run it, else onnx's own NumPy evaluator.

    ONNX Runtime has no float64 convolution on the CPU; ``onnx.reference.ReferenceEvaluator``
    (part of the onnx package) computes every operator in NumPy, in the file's precision.
    """
    softmax = any("softmax" in note for note in model.metadata.get("import_notes", ()))
    why = "onnxruntime is not installed"
    try:
        onnxruntime = _module("onnxruntime")
        session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    except ImportError:
        session = None
    except Exception as exc:
        session = None
        why = f"onnxruntime {onnxruntime.__version__} cannot run it: {_first_line(exc)}"
    if session is not None:
        spec = session.get_inputs()[0]
        name, shape = spec.name, spec.shape
        dtype = np.float64 if spec.type == "tensor(double)" else np.float32
        label = f"onnxruntime {onnxruntime.__version__} ({np.dtype(dtype).name})"

        def run(x: Array) -> Any:
            return session.run(None, {name: x.astype(dtype)})[0]
    else:
        onnx = _module("onnx")
        reference = _module("onnx.reference")
        proto = onnx.load(str(source))
        constants = {t.name for t in proto.graph.initializer}
        graph_input = next(v for v in proto.graph.input if v.name not in constants)
        name = graph_input.name
        shape = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
        evaluator = reference.ReferenceEvaluator(proto)
        label = f"onnx.reference.ReferenceEvaluator ({np.dtype(dtype).name}; {why})"

        def run(x: Array) -> Any:
            return evaluator.run(None, {name: x.astype(dtype)})[0]

    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 2
    return _Reference(label, lambda x: np.asarray(run(x), dtype=np.float64), batch,
                      1e-10 if dtype == np.float64 else 1e-5, softmax)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- PyTorch state dicts


def _from_state_dict(source: Path, args: argparse.Namespace) -> tuple[Graph, _Reference]:
    if not args.arch:
        raise CliError(f"IN {source}: a state dict holds weights only; give --arch NAME, the torchvision architecture "
                       "(e.g. resnet18, vgg11_bn)")
    try:
        torch = _module("torch")
    except ImportError:
        raise CliError(f"IN {source}: reading a state dict needs torch and torchvision (pip install torch "
                       "torchvision)") from None
    try:
        torchvision = _module("torchvision")
    except Exception as exc:  # missing, or its C operators do not load beside this torch
        raise CliError(f"--arch {args.arch}: torchvision could not be imported ({type(exc).__name__}: "
                       f"{_first_line(exc)})") from None
    names = [n for n in dir(torchvision.models) if n.islower() and not n.startswith("_")
             and callable(getattr(torchvision.models, n))]
    if args.arch not in names:
        close = difflib.get_close_matches(args.arch, names, n=3)
        raise CliError(f"--arch {args.arch}: not a torchvision architecture"
                       f"{' (did you mean ' + ', '.join(close) + '?)' if close else ''}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CliError(f"IN {source}: torch.load(weights_only=True) cannot read it ({_first_line(exc)}); save the "
                       "weights with torch.save(model.state_dict(), path)") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise CliError(f"IN {source}: not a state dict (a mapping of parameter names to tensors); found "
                       f"{type(state).__name__}")
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    options = {"num_classes": int(matrices[-1].shape[0])} if matrices else {}
    try:
        # float64 before loading: float32 weights are copied exactly, float64 ones are not rounded
        net = getattr(torchvision.models, args.arch)(weights=None, **options).double()
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise CliError(f"IN {source}: the state dict does not fit torchvision's {args.arch}: "
                       f"{' '.join(lines[:3])[:400]}") from None
    net = net.double().eval()
    from .torch_bridge import from_torch

    shape = args.input_shape or (3, 224, 224)
    model = _with_metadata(from_torch(net), {"input_shape": shape,
                                             "imported_from": f"torch state dict {source.name}, torchvision "
                                                              f"{args.arch}"})

    def forward(x: Array) -> Array:
        with torch.no_grad():
            return np.asarray(net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy())

    return model, _Reference(f"torch {torch.__version__} (float64)", forward, 2, 1e-10)

