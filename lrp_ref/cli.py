"""The ``lrp-ref`` command line (also ``python -m lrp_ref``).

Subcommands::

    lrp-ref info          --model M
    lrp-ref explain       --model M --input I --rule R [--target T] --out DIR
    lrp-ref compare-rules --model M [--input I] [--target T] --out DIR
    lrp-ref check         --model M [--samples FILE]
    lrp-ref vectors       --out DIR
    lrp-ref compare       --model M --input I --rule R --candidate FILE [--profile P]
    lrp-ref check-file    PATH [PATH ...] [--timeout S]

``--input`` is ``sample:K`` (digit K of the shipped samples file, by default
``mnist_samples.h5`` beside the model), or a ``.npy``, ``.h5`` or ``.png`` file
of raw values (for MNIST, pixels 0..255) that the model's
``input_scale``/``input_offset`` map to model inputs; ``--preprocessed`` takes
the file's values as model inputs as they are.  Rules are named as in
:mod:`lrp_ref.catalog`.  Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import h5py
import numpy as np
from numpy.typing import NDArray

from . import catalog, io, profiles, vectors, viz
from .compare import compare
from .errors import ConservationError, LrpRefError, ShapeError
from .explain import Explanation, explain
from .sequential import Sequential

Array = NDArray[Any]
SAMPLES_FILE = "mnist_samples.h5"


class CliError(Exception):
    """A problem with the command's arguments or files, reported as one line."""


# ----------------------------------------------------------------------------- inputs


def load_samples(path: Path) -> tuple[Array, Array]:
    """The shipped samples: raw images (N, H, W) uint8 and their labels (N,)."""
    if not path.is_file():
        raise CliError(f"samples file {path} not found (give --samples FILE)")
    with h5py.File(path, "r") as f:
        if "images" not in f or "labels" not in f:
            raise CliError(f"{path} is not a samples file: expected datasets 'images' and 'labels'")
        return np.asarray(f["images"]), np.asarray(f["labels"])


def preprocess(raw: Array, model: Sequential) -> Array:
    """Model input from raw values: ``raw * input_scale + input_offset`` (per channel if arrays)."""
    meta = model.metadata
    scale = np.asarray(meta.get("input_scale", 1.0), dtype=np.float64)
    offset = np.asarray(meta.get("input_offset", 0.0), dtype=np.float64)
    if scale.ndim == 1:
        scale = scale[:, None, None]
    if offset.ndim == 1:
        offset = offset[:, None, None]
    return raw.astype(np.float64) * scale + offset


def _fit_shape(x: Array, model: Sequential, source: str) -> Array:
    if "input_shape" not in model.metadata:  # the shape is a guess: say so if the model refuses it
        try:
            model.shapes(x.shape)
        except ShapeError as exc:
            raise CliError(f"{source} has shape {x.shape}, which the model does not take ({exc}), and the model file "
                           "has no input_shape metadata; save it with save(model, path, metadata={'input_shape': "
                           "...})") from None
    shape = tuple(model.metadata.get("input_shape", x.shape))
    if x.shape == shape:
        return x[None]
    if x.shape[1:] == shape:
        return x
    if x.size == int(np.prod(shape)):
        return x.reshape(1, *shape)
    raise CliError(f"{source} has shape {x.shape}; the model expects {shape} (or a batch of it)")


def read_input(spec: str, model: Sequential, samples: Path, preprocessed: bool) -> tuple[Array, int | None]:
    """Model input (1, ...) for ``--input``, and the true label when known."""
    if spec.startswith("sample:"):
        images, labels = load_samples(samples)
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise CliError(f"--input {spec!r}: expected sample:K with an integer K") from None
        if not 0 <= k < len(images):
            raise CliError(f"--input {spec!r}: {samples.name} holds samples 0..{len(images) - 1}")
        return _fit_shape(preprocess(images[k], model), model, spec), int(labels[k])
    path = Path(spec)
    if not path.is_file():
        raise CliError(f"--input {spec!r}: no such file (or use sample:K)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raw = np.load(path, allow_pickle=False)
    elif suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            names = [k for k in f if isinstance(f[k], h5py.Dataset)]
            if len(names) != 1 and "x" not in names:
                raise CliError(f"{path}: expected one dataset (or one named 'x'); found {names}")
            raw = np.asarray(f["x" if "x" in names else names[0]])
    elif suffix == ".png":
        try:
            from PIL import Image
        except ImportError:
            raise CliError("reading PNG needs the 'viz' extra: pip install 'lrp_ref[viz]'") from None
        raw = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    else:
        raise CliError(f"--input {spec!r}: expected sample:K, .npy, .h5 or .png")
    if raw.dtype.kind not in "biuf":
        raise CliError(f"{path}: expected numbers, found dtype {raw.dtype}")
    x = raw.astype(np.float64) if preprocessed else preprocess(np.asarray(raw), model)
    return _fit_shape(x, model, str(path)), None


def bounds(model: Sequential) -> tuple[Any, Any] | None:
    """The model-input bounds (input_low, input_high) if the model declares them."""
    meta = model.metadata
    if "input_low" not in meta or "input_high" not in meta:
        return None
    low, high = np.asarray(meta["input_low"], float), np.asarray(meta["input_high"], float)
    if low.ndim == 1:  # per channel: broadcast over (C, H, W)
        low, high = low[:, None, None], high[:, None, None]
    return low, high


def samples_path(args: argparse.Namespace) -> Path:
    """``--samples``, or the shipped samples file beside the model."""
    return Path(args.samples) if args.samples else Path(args.model).parent / SAMPLES_FILE


def open_model(path: str) -> Sequential:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"model file {path} not found")
    return io.load(p)


def class_name(model: Sequential, k: int) -> str:
    names = model.metadata.get("class_names")
    return str(names[k]) if names is not None and k < len(names) else str(k)


# ----------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, otherwise printed at the end)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.start = total, label, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        sys.stdout.flush()  # keep the table and the bar in order when both go to one file
        if self.tty or self.done == self.total:
            width = 24
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            bar = "#" * filled + "." * (width - filled)
            line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {what}"
            end = "\n" if self.done == self.total else ""
            print(f"\r{line[:100]:<100}", end=end, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    print(f"model: {args.model}")
    print(model.describe())
    shape = model.metadata.get("input_shape")
    if shape is not None:
        print("shapes at the layer boundaries:")
        for i, s in enumerate(model.shapes(tuple(shape))):
            print(f"  {i:>2}  {s}")
    print("metadata:")
    for key, value in sorted(model.metadata.items()):
        text = np.array2string(value, threshold=8) if isinstance(value, np.ndarray) else repr(value)
        print(f"  {key}: {text}")
    return 0


def _ledger_summary(e: Explanation) -> tuple[float, float]:
    """(largest relative layer residual, absorbed share of |f(x)|) over the batch."""
    worst = max(float(np.max(np.abs(b.residual) / np.maximum(b.scale, 1e-300))) for b in e.ledger.entries)
    share = float(np.mean(np.abs(e.ledger.absorbed) / np.maximum(np.abs(e.score), 1e-300)))
    return worst, share


def cmd_explain(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    samples = samples_path(args)
    x, label = read_input(args.input, model, samples, args.preprocessed)
    rules = catalog.from_spec(args.rule, bounds(model))
    e = explain(model, x, rules, target=args.target, profile=args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "relevance.npy", e.relevance[0], allow_pickle=False)
    viz.save_png(viz.heatmap_rgb(e.relevance[0]), out / "heatmap.png")
    viz.save_png(viz.overlay(e.relevance[0], x[0]), out / "overlay.png")
    table = e.ledger.table()
    (out / "ledger.txt").write_text(table + "\n", encoding="utf-8")
    assert e.target is not None  # explain() was given a target or chose the arg-max
    target = int(e.target[0])
    truth = f", true label {label}" if label is not None else ""
    print(f"explained class {class_name(model, target)}, f(x) = {e.score[0]:.6g}{truth}; rule {args.rule}")
    print(table)
    print(f"wrote {out / 'heatmap.png'}, {out / 'overlay.png'}, {out / 'relevance.npy'}, {out / 'ledger.txt'}")
    return 0


def cmd_compare_rules(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    samples = samples_path(args)
    x, label = read_input(args.input, model, samples, args.preprocessed)
    panels = []
    progress = Progress(len(catalog.SEED_COMPARISON), "rules")
    first: Explanation | None = None
    print(f"{'rule':<30} {'sum R':>10} {'absorbed':>10} {'max layer residual':>19}")
    for label_text, spec in catalog.SEED_COMPARISON:
        e = explain(model, x, catalog.from_spec(spec, bounds(model)), target=args.target)
        e.ledger.check_balance()
        first = first or e
        worst, _ = _ledger_summary(e)
        total = float(e.relevance.sum())
        print(f"{label_text:<30} {total:>10.4g} {float(e.ledger.absorbed[0]):>10.3g} {worst:>19.2e}")
        panels.append((label_text, e.relevance[0], f"\u03a3R = {total:.3g}   f(x) = {e.score[0]:.3g}"))
        progress.step(label_text)
    assert first is not None and first.target is not None
    target = int(first.target[0])
    truth = f"; true label {label}" if label is not None else ""
    title = (f"{Path(args.model).stem}: explaining class {class_name(model, target)}, f(x) = {first.score[0]:.3f}"
             f"{truth}   (red: for, blue: against)")
    out = viz.save_comparison(x[0], panels, Path(args.out) / "compare_rules.png", title)
    print(f"wrote {out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    samples = samples_path(args)
    images, labels = load_samples(samples)
    x = np.stack([_fit_shape(preprocess(img, model), model, "sample")[0] for img in images])
    specs = [(label, spec) for label, spec in catalog.SEED_COMPARISON]
    specs += [(name, name) for name in catalog.COMPOSITES if name not in {s for _, s in specs}]
    specs += [(name, name) for name in catalog.RULES if name not in {s for _, s in specs} | catalog.INPUT_ONLY]
    correct = int(np.sum(np.argmax(model.forward(x), axis=1) == labels))
    print(f"{len(x)} samples from {samples}, {correct} classified correctly")
    print(f"{'rule':<30} {'max layer residual':>19} {'absorbed / |f(x)|':>18}  status")
    progress = Progress(len(specs), "check")
    failures = 0
    rows = []
    for label_text, spec in specs:
        e = explain(model, x, catalog.from_spec(spec, bounds(model)))
        try:
            e.ledger.check_balance()
            e.ledger.check_conservation()
            status = "ok"
        except ConservationError:
            status, failures = "FAILED", failures + 1
        worst, share = _ledger_summary(e)
        rows.append(f"{label_text:<30} {worst:>19.2e} {share:>18.3%}  {status}")
        progress.step(label_text)
    print("\n".join(rows))
    print(f"{len(specs) - failures} of {len(specs)} rules balance to the float64 tolerance")
    return 1 if failures else 0


def cmd_vectors(args: argparse.Namespace) -> int:
    paths = vectors.write_suite(args.out)
    print(f"wrote {len(paths)} conformance vectors to {args.out} (format: lrp_ref.vectors module docstring)")
    return 0


def read_candidate(path: Path) -> dict[int, Array]:
    """A candidate's relevances: a .npy of the input relevance, or an HDF5 file with a dataset
    'relevance' (input) or a group 'relevance' of datasets named by boundary (000 = input)."""
    if not path.is_file():
        raise CliError(f"candidate file {path} not found")
    if path.suffix.lower() == ".npy":
        return {0: np.load(path, allow_pickle=False)}
    with h5py.File(path, "r") as f:
        if "relevance" not in f:
            raise CliError(f"{path}: expected a dataset or group named 'relevance'")
        item = f["relevance"]
        if isinstance(item, h5py.Dataset):
            return {0: np.asarray(item)}
        try:
            return {int(name): np.asarray(item[name]) for name in item}
        except ValueError:
            raise CliError(f"{path}: the datasets in 'relevance' must be named by boundary (000, 001, ...)") from None


def cmd_compare(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    samples = samples_path(args)
    x, _ = read_input(args.input, model, samples, args.preprocessed)
    candidate = read_candidate(Path(args.candidate))
    shapes = model.shapes(x.shape[1:])  # one sample's shape at every boundary
    for k, r in candidate.items():
        if 0 <= k < len(shapes) and r.shape == shapes[k]:  # given without the batch axis
            candidate[k] = r[None]
    rules = catalog.from_spec(args.rule, bounds(model))
    result = compare(model, x, rules, candidate, target=args.target, profile=args.profile, dtype=args.dtype)
    print(result.report())
    return 0 if result.ok else 1


def cmd_check_file(args: argparse.Namespace) -> int:
    """One line per file: ``PATH: ok: ...`` or ``PATH: refused: why``; status 2 if any file is refused."""
    refused = 0
    for path in args.paths:
        try:
            line = io.check_file(path, timeout=args.timeout)
        except (LrpRefError, OSError) as exc:
            refused += 1
            why = "no such file" if isinstance(exc, FileNotFoundError) else " ".join(str(exc).split())
            why = why.removeprefix(f"{path}: ")
            line = f"{path}: refused: {why}"
        print(line, flush=True)
    return 2 if refused else 0


# ----------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrp-ref", description="Layer-wise Relevance Propagation, the reference implementation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, needs_input: bool) -> None:
        p.add_argument("--model", required=True, help="model file (lrp_ref HDF5), e.g. weights/mnist_cnn.h5")
        p.add_argument("--samples", help=f"samples file for sample:K (default: {SAMPLES_FILE} beside the model)")
        if needs_input:
            p.add_argument("--target", type=int, help="class to explain (default: the predicted class)")
            p.add_argument("--preprocessed", action="store_true", help="input file holds model inputs, not raw values")

    p = sub.add_parser("info", help="architecture, parameter counts and metadata of a model")
    p.add_argument("--model", required=True)
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("explain", help="explain one input with one rule or composite")
    common(p, True)
    p.add_argument("--input", required=True, help="sample:K, or a .npy/.h5/.png file of raw values")
    p.add_argument("--rule", required=True, help="e.g. epsilon:epsilon=0.25, epsilon_gamma_box, zbox+alpha_beta")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--profile", default="lrp_ref", choices=list(profiles.PROFILES), help="convention profile")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("compare-rules", help="one figure: the input and a heatmap for every rule of the seed")
    common(p, True)
    p.add_argument("--input", default="sample:0", help="sample:K (default sample:0) or a file")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=cmd_compare_rules)

    p = sub.add_parser("check", help="run every rule over the shipped samples and report the ledger")
    common(p, False)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("vectors", help="write the golden conformance vectors (HDF5) to a folder")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=cmd_vectors)

    p = sub.add_parser("compare", help="compare another implementation's relevances with the oracle's")
    common(p, True)
    p.add_argument("--input", required=True, help="sample:K, or a .npy/.h5/.png file of raw values")
    p.add_argument("--rule", required=True, help="the rule or composite the candidate implements")
    p.add_argument("--candidate", required=True,
                   help=".npy of the input relevance, or .h5 with 'relevance' or 'relevance/000'...")
    p.add_argument("--profile", default="lrp_ref", choices=list(profiles.PROFILES), help="convention profile")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="precision the candidate computed in (picks the tolerance)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("check-file", help="validate model files in a child process (survives libhdf5 crashes)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="lrp_ref model files (HDF5)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per file (default 30)")
    p.set_defaults(run=cmd_check_file)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CliError, LrpRefError, OSError) as exc:
        print(f"lrp-ref: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
