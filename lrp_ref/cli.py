"""The ``lrp-ref`` command line (also ``python -m lrp_ref``).

Subcommands::

    lrp-ref info          --model M
    lrp-ref explain       --model M --input I --rule R [--target T | --start-at NODE --neuron K] --out DIR
    lrp-ref compare-rules --model M [--input I] [--target T] [--more] --out DIR
    lrp-ref check         --model M [--samples FILE]
    lrp-ref vectors       --out DIR
    lrp-ref compare       --model M --input I --rule R --candidate FILE [--profile P]
    lrp-ref check-file    PATH [PATH ...] [--timeout S]
    lrp-ref serve         [--host H] [--port P] [--model [NAME=]PATH]   (the web demo)
    lrp-ref convert       IN OUT.h5 [--arch A] [--input-shape C,H,W]   (see lrp_ref._cli_convert)
    lrp-ref dtd           --model M --input I --layer L [--neuron N] [--rule R] --out DIR
    lrp-ref evaluate      --model M [--samples FILE] [--rules ...] [--baseline B] --out DIR
    lrp-ref explain-dataset --model M --source FILE.h5:DATASET --rule R --out OUT.h5 (lrp_ref._cli_dataset)
    lrp-ref --version

``--input`` is ``sample:K`` (digit K of the shipped samples file, by default
``mnist_samples.h5`` beside the model; also ``sample:K,L,...`` and
``sample:all``), or a ``.npy``, ``.h5`` or ``.png`` file of raw values (for
MNIST, pixels 0..255) that the model's ``input_scale``/``input_offset`` map to
model inputs.  A file may hold one sample or a batch (N, ...): a batch is
explained whole, one heatmap and one ledger per sample.  Values outside the
model's raw range are refused; ``--input-range LOW,HIGH`` maps data in another
range (e.g. ``0,1``) onto it, and ``--preprocessed`` takes the values as model
inputs.  Rules are named as in :mod:`lrp_ref.catalog`.  Errors print one line
that names the parameter and the file, and exit with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from . import __version__, _cli_dtd, _cli_evaluate, catalog, io, profiles, vectors, viz
from ._cli_dataset import add_parser as add_explain_dataset
from ._cli_inputs import (
    CliError,
    Inputs,
    Interpretation,
    bounds,
    fit_layout,
    load_samples,
    parse_range,
    preprocess,
    read_candidate,
    read_input,
    to_model_input,
)
from ._cli_rules import build, unused_parts
from ._cli_serve import add_serve
from ._cli_start import add_start_options, start_kwargs
from .canonize import canonize
from .compare import compare
from .composites import Composite
from .errors import ConservationError, LrpRefError
from .explain import Explanation, explain
from .formats import load_any
from .graph import Graph
from .rules import Rule

__all__ = ["CliError", "Progress", "bounds", "build_parser", "load_samples", "main", "preprocess"]

Array = NDArray[Any]
SAMPLES_FILE = "mnist_samples.h5"


# ----------------------------------------------------------------------------- inputs and outputs


def samples_path(args: argparse.Namespace) -> Path:
    """``--samples``, or the shipped samples file beside the model."""
    return Path(args.samples) if args.samples else Path(args.model).parent / SAMPLES_FILE


def _samples_hint(args: argparse.Namespace) -> str:
    return "" if args.samples else f" (the default beside --model {args.model}; give --samples FILE)"


def read_samples(args: argparse.Namespace) -> tuple[Array, Array]:
    """The samples file's images and labels (``--samples`` or the default beside the model)."""
    return load_samples(samples_path(args), _samples_hint(args))


def get_inputs(args: argparse.Namespace, model: Graph) -> Inputs:
    """``--input`` read, checked and turned into model inputs (see :mod:`lrp_ref._cli_inputs`)."""
    return read_input(args.input, model, samples_path(args), interpretation(args), args.grey, _samples_hint(args))


def explained_model(args: argparse.Namespace, path: str) -> Graph:
    """The model to explain: ``--model`` (or another path), canonized if ``--canonize`` is given."""
    model = open_model(path)
    if getattr(args, "canonize", False):
        model = canonize(model)
        merged = model.metadata.get("canonized", [])
        print(f"{Path(path).stem}: canonize merged {len(merged)} batch norm(s) into the layers before them")
    return model


def open_model(path: str, option: str = "--model") -> Graph:
    """The model of ``--model`` (any format of :mod:`lrp_ref.formats`); a file that cannot be read is one line."""
    p = Path(path)
    if not p.is_file():
        near = p.with_name(p.name + ".h5")
        hint = f"did you mean {near}?" if near.is_file() else "expected an lrp_ref model, e.g. weights/mnist_cnn.h5"
        raise CliError(f"{option} {path}: {'not a file' if p.exists() else 'no such file'} ({hint})")
    try:
        return load_any(p)
    except ImportError as exc:
        raise CliError(f"{option} {path}: {exc}") from None
    except (LrpRefError, OSError) as exc:
        text = str(exc)
        raise CliError(f"{option} {text}" if text.startswith(str(p)) else f"{option} {path}: {text}") from None


def interpretation(args: argparse.Namespace) -> Interpretation:
    """How ``--input`` values become model inputs, from ``--preprocessed`` and ``--input-range``."""
    if args.preprocessed and args.input_range is not None:
        raise CliError("--preprocessed and --input-range exclude each other: the first takes model inputs as they "
                       "are, the second maps LOW..HIGH onto the model's range")
    return Interpretation(args.preprocessed, args.input_range)


def class_name(model: Graph, k: int) -> str:
    names = model.metadata.get("class_names")
    return str(names[k]) if names is not None and k < len(names) else str(k)


def check_target(target: int | None, model: Graph, x: Array) -> None:
    """Refuse a ``--target`` the model has no output for."""
    if target is None:
        return
    out = model.shapes(x.shape[1:])[-1]
    if len(out) == 1 and not 0 <= target < out[0]:
        names = model.metadata.get("class_names")
        listing = f": {', '.join(map(str, names))}" if names is not None else ""
        raise CliError(f"--target {target}: the model has {out[0]} outputs, classes 0..{out[0] - 1}{listing}")


def run_explain(model: Graph, x: Array, rules: Rule | Composite, spec: str, **kwargs: Any) -> Explanation:
    """:func:`explain`, with a failure reported against ``--rule``."""
    try:
        return explain(model, x, rules, **kwargs)
    except LrpRefError as exc:
        raise CliError(f"--rule {spec!r}: {exc}") from None


def check_out(path: str) -> None:
    """Refuse an ``--out`` that cannot be a folder, before any work is done."""
    if Path(path).exists() and not Path(path).is_dir():
        raise CliError(f"--out {path}: exists and is not a folder")


def prepare_out(path: str) -> Path:
    """The ``--out`` folder, created if needed."""
    out = Path(path)
    check_out(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {path}: cannot create the folder ({exc.strerror or exc})") from None
    return out


def _numbered(n: int) -> str:
    """Format of a sample number in file names: 000, 001, ... (wider for large batches)."""
    return f"0{max(3, len(str(n - 1)))}d"


def _worst_residual(e: Explanation, i: int) -> float:
    """Largest relative layer residual of sample ``i``."""
    return max(float(abs(b.residual[i]) / max(b.scale[i], 1e-300)) for b in e.ledger.entries)


def _ledger_summary(e: Explanation) -> tuple[float, float]:
    """(largest relative layer residual, absorbed share of |f(x)|) over the batch."""
    worst = max(float(np.max(np.abs(b.residual) / np.maximum(b.scale, 1e-300))) for b in e.ledger.entries)
    share = float(np.mean(np.abs(e.ledger.absorbed) / np.maximum(np.abs(e.score), 1e-300)))
    return worst, share


def batch_note(e: Explanation, profile: str) -> str | None:
    """A warning when a rule's stabiliser depends on the whole batch (the tutorial's RMS), else None."""
    if len(e.relevance) > 1 and any(getattr(rule, "scale", None) == "rms" for rule in e.rules):
        return (f"note: profile {profile} scales epsilon by the RMS of z over the whole batch, as its source does, "
                "so each sample's relevance depends on the other samples; explain them one by one to avoid that")
    return None


def _truth(inputs: Inputs, i: int, sep: str) -> str:
    return f"{sep}true label {int(inputs.labels[i])}" if inputs.labels is not None else ""


# ----------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, otherwise printed at the end).

    Text printed while the bar is on screen goes through :meth:`write`, which
    clears the bar first and redraws it below the text, so that the two never
    share a line of the terminal (the bar is on stderr, the text on stdout).
    """

    WIDTH = 100

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.start = total, label, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.line = ""  # the bar as last drawn, while it is on screen unfinished

    def _draw(self, end: str) -> None:
        print(f"\r{self.line[:self.WIDTH]:<{self.WIDTH}}", end=end, file=sys.stderr, flush=True)

    def step(self, what: str) -> None:
        self.done += 1
        sys.stdout.flush()  # keep the table and the bar in order when both go to one file
        if self.tty or self.done == self.total:
            width = 24
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            bar = "#" * filled + "." * (width - filled)
            self.line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {what}"
            finished = self.done == self.total
            self._draw("\n" if finished else "")
            if finished:
                self.line = ""

    def write(self, text: str) -> None:
        """Print ``text`` to stdout on lines of its own, above the bar."""
        if self.tty and self.line:
            print(f"\r{'':<{self.WIDTH}}\r", end="", file=sys.stderr, flush=True)
        print(text, flush=True)
        if self.tty and self.line:
            self._draw("")


# ----------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    print_model(args.model, open_model(args.model))
    return 0


def print_model(label: str, model: Graph) -> None:
    """What ``lrp-ref info`` prints: the layers, the shapes at their boundaries, the metadata."""
    print(f"model: {label}")
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


def _explained(e: Explanation, model: Graph, i: int) -> str:
    """What sample ``i``'s explanation explains: ``class 3, f(x) = 2.5``, or the neuron and its start relevance."""
    if e.start_at is None:
        assert e.target is not None  # explain() was given a target or chose the arg-max
        return f"class {class_name(model, int(e.target[i]))}, f(x) = {e.score[i]:.6g}"
    idle = " (inactive: nothing to explain)" if e.score[i] == 0 else ""
    return f"start relevance {e.score[i]:.6g}{idle}"


def _heatmaps(writer: viz.HeatmapWriter, e: Explanation, model: Graph, x: Array, i: int, heatmap: Path,
              overlay: Path, rule: str, sample: str = "") -> None:
    """The heatmap and overlay figures of sample ``i``, titled with what was explained and by which rule."""
    what = _explained(e, model, i) if e.start_at is None else f"{e.description} ({_explained(e, model, i)})"
    title = f"{sample}{what}\nrule {rule}"
    writer.save(e.relevance[i], heatmap, title)
    writer.save(e.relevance[i], overlay, title, image=x[i])


def cmd_explain(args: argparse.Namespace) -> int:
    check_out(args.out)
    model = explained_model(args, args.model)
    inputs = get_inputs(args, model)
    rules = build(args.rule, model, bounds(model))
    x = inputs.x
    start = start_kwargs(args, model, x.shape)
    check_target(args.target, model, x)
    print(f"input: {inputs.description}")
    e = run_explain(model, x, rules, args.rule, target=args.target, profile=args.profile, **start)
    out = prepare_out(args.out)
    image = x.ndim in (3, 4)  # (N, H, W) or (N, C, H, W): heatmaps; vectors get relevance.npy and the ledger only
    if not image:
        print(f"note: no heatmaps: one input has shape {x.shape[1:]}, not an image (H, W) or (C, H, W)")
    if e.start_at is not None and inputs.batched:
        print(f"explaining {e.description}")
    if not inputs.batched:  # one sample: the files and the printout of a single explanation
        np.save(out / "relevance.npy", e.relevance[0], allow_pickle=False)
        if image:
            with viz.HeatmapWriter() as writer:
                _heatmaps(writer, e, model, x, 0, out / "heatmap.png", out / "overlay.png", args.rule)
        table = e.ledger.table()
        (out / "ledger.txt").write_text(table + "\n", encoding="utf-8")
        what = _explained(e, model, 0) if e.start_at is None else f"{e.description} ({_explained(e, model, 0)})"
        print(f"explained {what}{_truth(inputs, 0, ', ')}; rule {args.rule}")
        print(table)
        pictures = f"{out / 'heatmap.png'}, {out / 'overlay.png'}, " if image else ""
        print(f"wrote {pictures}{out / 'relevance.npy'}, {out / 'ledger.txt'}")
        return 0
    n, fmt = len(x), _numbered(len(x))
    if (note := batch_note(e, args.profile)) is not None:
        print(note)
    np.save(out / "relevance.npy", e.relevance, allow_pickle=False)
    tables = []
    progress = Progress(n, "samples")
    drawer = viz.HeatmapWriter() if image else None  # one figure, redrawn for every sample
    for i in range(n):
        if drawer is not None:
            _heatmaps(drawer, e, model, x, i, out / f"heatmap_{i:{fmt}}.png", out / f"overlay_{i:{fmt}}.png",
                      args.rule, f"sample {i}{inputs.source(i)}: ")
        headline = (f"sample {i:{fmt}}{inputs.source(i)}: {_explained(e, model, i)}, "
                    f"sum R = {e.ledger.input_relevance[i]:.6g}, absorbed = {e.ledger.absorbed[i]:.4g}, "
                    f"max layer residual {_worst_residual(e, i):.2e}{_truth(inputs, i, ', ')}")
        progress.write(headline)
        tables.append(f"{headline}\n{e.ledger.table(i)}\n")
        progress.step(f"sample {i}")
    if drawer is not None:
        drawer.close()
    (out / "ledger.txt").write_text("\n".join(tables), encoding="utf-8")
    print(f"explained {n} samples with rule {args.rule}")
    last = f"{n - 1:{fmt}}"
    pictures = (f"{out}/heatmap_{0:{fmt}}.png .. heatmap_{last}.png, overlay_{0:{fmt}}.png .. overlay_{last}.png, "
                if image else "")
    print(f"wrote {out / 'relevance.npy'} {e.relevance.shape}, {pictures}{out / 'ledger.txt'} (one table per sample)")
    return 0


def runnable_specs(specs: Sequence[tuple[str, str]], model: Graph) -> tuple[list[tuple[str, str]], str | None]:
    """The (label, spec) pairs that can run on ``model``, and a note naming those left out.

    zB needs the model's input bounds (metadata ``input_low``/``input_high``); a
    model without them (an ONNX or Keras import) skips the zB rules instead of failing.
    """
    if bounds(model) is not None:
        return list(specs), None
    kept = [(label_text, spec) for label_text, spec in specs if not catalog.needs_bounds(spec)]
    left = [label_text for label_text, spec in specs if catalog.needs_bounds(spec)]
    if not left:
        return kept, None
    return kept, (f"note: left out {', '.join(left)}: the model declares no input bounds (metadata input_low and "
                  "input_high), which zB needs; a converted model gets them with lrp-ref convert "
                  "--set input_low=L --set input_high=H")


def _rule_comparison(model: Graph, x: Array, target: int | None, more: bool = False
                     ) -> tuple[list[tuple[str, Explanation]], list[str], int]:
    """The seed's comparison on ``model`` (``more``: and MORE_COMPARISON).

    Returns (label, explanation) per rule, notes, and how many of the runs are
    the seed's rules (the rest, with ``more``, start a row of their own).
    """
    runs: list[tuple[str, Explanation]] = []
    notes = []
    seed, left_out = runnable_specs(catalog.SEED_COMPARISON, model)
    if left_out:
        notes.append(left_out)
    specs = seed + list(catalog.MORE_COMPARISON if more else ())
    progress = Progress(len(specs), "rules")
    for label_text, spec in specs:
        rules = build_for_comparison(spec, model)
        if isinstance(rules, Composite) and (why := unused_parts(rules, model)) is not None:
            notes.append(f"note: {label_text} ({spec}): {why}")
        e = run_explain(model, x, rules, spec, target=target)
        e.ledger.check_balance()
        runs.append((label_text, e))
        progress.step(label_text)
    return runs, notes, len(seed)


def cmd_compare_rules(args: argparse.Namespace) -> int:
    check_out(args.out)
    paths = [args.model, *(args.also_model or [])]
    blocks: list[tuple[str, Graph, Inputs, list[tuple[str, Explanation]], int]] = []  # per model
    for path in paths:
        model = explained_model(args, path)
        inputs = get_inputs(args, model)
        x = inputs.x
        if x.ndim not in (3, 4):
            raise CliError(f"--input {args.input}: compare-rules draws heatmaps, and one input has shape "
                           f"{x.shape[1:]}, not an image (H, W) or (C, H, W); use explain, which writes relevance.npy "
                           "and the ledger")
        if blocks and len(x) != len(blocks[0][2].x):
            raise CliError(f"--also-model {path}: the input gives it {len(x)} samples, the first model "
                           f"{len(blocks[0][2].x)}")
        check_target(args.target, model, x)
        print(f"{Path(path).stem}: input: {inputs.description}" if len(paths) > 1 else f"input: {inputs.description}")
        runs, notes, n_seed = _rule_comparison(model, x, args.target, args.more)
        print("\n".join(notes), end="\n" if notes else "")
        blocks.append((Path(path).stem, model, inputs, runs, n_seed))
    inputs = blocks[0][2]
    n = len(inputs.x)
    out_dir, fmt = prepare_out(args.out), _numbered(n)
    written = []
    figures = Progress(n, "figures") if inputs.batched else None
    for i in range(n):
        groups, headline, lines = [], [], []  # lines: the table, printed above the progress bar
        for name, model, model_inputs, runs, n_seed in blocks:
            first = runs[0][1]
            assert first.target is not None
            target = int(first.target[i])
            caption = f"class {class_name(model, target)}, f(x) = {first.score[i]:.3f}"
            if inputs.batched or len(blocks) > 1:
                sample = f"sample {i:{fmt}}{inputs.source(i)}: " if inputs.batched else ""
                lines.append(f"{name + ': ' if len(blocks) > 1 else ''}{sample}explaining class "
                             f"{class_name(model, target)}, f(x) = {first.score[i]:.6g}{_truth(inputs, i, '; ')}")
            lines.append(f"{'rule':<30} {'sum R':>10} {'absorbed':>10} {'max layer residual':>19}")
            panels = []
            for label_text, e in runs:
                total = float(e.relevance[i].sum())
                lines.append(f"{label_text:<30} {total:>10.4g} {float(e.ledger.absorbed[i]):>10.3g} "
                             f"{_worst_residual(e, i):>19.2e}")
                panels.append((label_text, e.relevance[i], f"\u03a3R = {total:.3g}, f(x) = {e.score[i]:.3g}"))
            several = len(blocks) > 1  # one block per model, headed by its name
            seed = n_seed  # --more: the methods beyond LRP start a row of their own
            groups.append((name if several else "", model_inputs.x[i], panels[:seed], caption if several else ""))
            if panels[seed:]:
                heading = f"{name}: beyond LRP" if several else "beyond LRP"
                groups.append((heading, model_inputs.x[i], panels[seed:], ""))
            headline.append(f"{name}: explaining class {class_name(model, target)}, f(x) = {first.score[i]:.3f}")
        if figures is not None:
            figures.write("\n".join(lines))
        else:
            print("\n".join(lines))
        which = f"sample {i}{inputs.source(i)}: " if inputs.batched else ""
        legend = _truth(inputs, i, '; ')
        if len(blocks) == 1:
            title = f"{headline[0].replace(': ', ': ' + which, 1)}{legend}"
        else:
            title = f"{which}each model explains its own prediction{legend}"
        name = f"compare_rules_{i:{fmt}}.png" if inputs.batched else "compare_rules.png"
        written.append(viz.save_comparison_groups(groups, out_dir / name, title, scale=args.scale))
        if figures is not None:
            figures.step(name)
    many = f"{len(written)} figures: {written[0]} .. {written[-1]}"
    print(f"wrote {written[0]}" if len(written) == 1 else f"wrote {many}")
    return 0


def build_for_comparison(spec: str, model: Graph) -> Rule | Composite:
    """A rule of the seed's comparison, built as the catalog builds it."""
    try:
        return catalog.from_spec(spec, bounds(model))
    except LrpRefError as exc:
        raise CliError(f"rule {spec!r} of the comparison: {exc}") from None


def cmd_check(args: argparse.Namespace) -> int:
    model = explained_model(args, args.model)
    samples = samples_path(args)
    images, labels = read_samples(args)
    what = f"--samples {samples}"
    x, _, layout = fit_layout(images, model, what)
    x, values = to_model_input(x, model, what, interpretation(args))
    specs = [(label, spec) for label, spec in catalog.SEED_COMPARISON]
    specs += [(name, name) for name in catalog.COMPOSITES if name not in {s for _, s in specs}]
    specs += [(name, name) for name in catalog.RULES if name not in {s for _, s in specs} | catalog.INPUT_ONLY]
    specs, left_out = runnable_specs(specs, model)
    if left_out:
        print(left_out)
    correct = int(np.sum(np.argmax(model.forward(x), axis=1) == labels))
    print(f"{len(x)} samples from {samples} ({layout}; {values}), {correct} classified correctly")
    print(f"{'rule':<30} {'max layer residual':>19} {'absorbed / |f(x)|':>18}  status")
    progress = Progress(len(specs), "check")
    failures = 0
    rows, idle = [], []
    for label_text, spec in specs:
        rules = build_for_comparison(spec, model)
        if isinstance(rules, Composite) and unused_parts(rules, model) is not None:
            idle.append(label_text)
        e = run_explain(model, x, rules, spec)
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
    if idle:
        print(f"note: the Conv2d rules of {', '.join(idle)} reach no layer of this model, so these composites "
              "reduce to their other rules here (lrp-ref explain --rule NAME says to what)")
    print(f"{len(specs) - failures} of {len(specs)} rules balance to the float64 tolerance")
    return 1 if failures else 0


def cmd_vectors(args: argparse.Namespace) -> int:
    out = prepare_out(args.out)
    paths = vectors.write_suite(out)
    print(f"wrote {len(paths)} conformance vectors to {args.out} (format: lrp_ref.vectors module docstring)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    model = explained_model(args, args.model)
    inputs = get_inputs(args, model)
    x = inputs.x
    rules = build(args.rule, model, bounds(model))
    check_target(args.target, model, x)
    candidate = read_candidate(Path(args.candidate), model.shapes(x.shape[1:]), len(x))
    print(f"input: {inputs.description}")
    try:
        result = compare(model, x, rules, candidate, target=args.target, profile=args.profile, dtype=args.dtype)
    except LrpRefError as exc:
        raise CliError(f"--rule {args.rule!r}: {exc}") from None
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
    """argparse with one-line errors that suggest the nearest option."""

    known_options: frozenset[str] = frozenset()
    commands: tuple[str, ...] = ()  # filled in by build_parser

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments" in message:
            for token in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(token.split("=")[0], sorted(_Parser.known_options), n=1)
                if token.startswith("-") and close:
                    message += f" (did you mean {close[0]}?)"
                    break
        if "--input-range: expected one argument" in message:
            message += " (for a negative LOW write --input-range=-1,1)"
        if "required: command" in message:
            message = f"a command is required: {', '.join(_Parser.commands[:-1])} or {_Parser.commands[-1]}"
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrp-ref", description="Layer-wise Relevance Propagation, the reference implementation.",
                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"lrp_ref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, needs_input: bool) -> None:
        p.add_argument("--model", required=True, help="model file: lrp_ref HDF5 (e.g. weights/mnist_cnn.h5) or "
                                                      "ONNX (.onnx; see lrp-ref convert)")
        p.add_argument("--samples", help=f"samples file for sample:K (default: {SAMPLES_FILE} beside the model)")
        p.add_argument("--preprocessed", action="store_true", help="the values are model inputs, not raw values")
        p.add_argument("--input-range", type=parse_range, metavar="LOW,HIGH",
                       help="the values span LOW..HIGH (e.g. 0,1 for data already scaled to [0, 1]); mapped "
                            "linearly onto the model's raw range. Without it, values outside the raw range "
                            "(0..255 for the MNIST models) are refused")
        p.add_argument("--canonize", action="store_true",
                       help="merge each batch norm into the Dense/Conv2d layer before it first (lrp_ref.canonize)")
        if needs_input:
            p.add_argument("--target", type=int, help="class to explain, for every sample (default: the predicted "
                                                      "class of each sample)")
            p.add_argument("--grey", action="store_true",
                           help="convert a colour PNG to grey (refused without it for a one-channel model)")

    p = sub.add_parser("info", help="architecture, parameter counts and metadata of a model", allow_abbrev=False)
    p.add_argument("--model", required=True, help="model file: lrp_ref HDF5 or ONNX (.onnx)")
    p.set_defaults(run=cmd_info)

    inputs = ("sample:K (also sample:K,L,... or sample:all), or a .npy/.h5/.png file of raw values, "
              "one sample or a batch (N, ...)")

    p = sub.add_parser("explain", help="explain an input (or a batch) with one rule or composite", allow_abbrev=False)
    common(p, True)
    p.add_argument("--input", required=True, help=inputs)
    rule_help = (f"NAME[:key=value,...] or FIRST+REST; rules: {', '.join(catalog.RULES)}; "
                 f"composites: {', '.join(catalog.COMPOSITES)}; methods: {', '.join(catalog.METHODS)}; "
                 "e.g. epsilon:epsilon=0.25, zbox+alpha_beta")
    p.add_argument("--rule", required=True, help=rule_help)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--profile", default="lrp_ref", choices=list(profiles.PROFILES), help="convention profile")
    add_start_options(p)
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("compare-rules", help="a figure per sample: the input and a heatmap for every rule of the seed",
                       allow_abbrev=False)
    common(p, True)
    p.add_argument("--input", default="sample:0", help=f"default sample:0; {inputs}")
    p.add_argument("--also-model", action="append", metavar="MODEL",
                   help="another model explained on the same input, drawn as further rows (repeatable)")
    p.add_argument("--more", action="store_true",
                   help="add a row with Excitation Backprop (MWP, c-MWP) and RAP, methods beyond LRP's rules")
    p.add_argument("--scale", choices=viz.SCALES, default="panel",
                   help="colours of the heatmaps: 'panel' scales each to its own max|R| (default: the rules' "
                        "magnitudes differ by orders, and one scale would leave most maps blank), 'shared' uses one "
                        "scale for all, so that equal colours mean equal relevance")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=cmd_compare_rules)

    p = sub.add_parser("check", help="run every rule over the shipped samples and report the ledger",
                       allow_abbrev=False)
    common(p, False)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("vectors", help="write the golden conformance vectors (HDF5) to a folder", allow_abbrev=False)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=cmd_vectors)

    p = sub.add_parser("compare", help="compare another implementation's relevances with the oracle's",
                       allow_abbrev=False)
    common(p, True)
    p.add_argument("--input", required=True, help=inputs)
    p.add_argument("--rule", required=True, help=f"the rule or composite the candidate implements: {rule_help}")
    p.add_argument("--candidate", required=True,
                   help=".npy of the input relevance (N, ...), or .h5 with 'relevance' or 'relevance/000'...")
    p.add_argument("--profile", default="lrp_ref", choices=list(profiles.PROFILES), help="convention profile")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="precision the candidate computed in (picks the tolerance)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("check-file", help="validate model files in a child process (survives libhdf5 crashes)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="lrp_ref model files (HDF5)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per file (default 30)")
    p.set_defaults(run=cmd_check_file)

    add_serve(sub)

    from ._cli_convert import add_convert

    add_convert(sub)

    _cli_dtd.add_parser(sub, common)
    _cli_evaluate.add_parser(sub, common)

    add_explain_dataset(sub)

    options = {s for action in parser._actions for s in action.option_strings}
    for p in sub.choices.values():
        options |= {s for action in p._actions for s in action.option_strings}
    _Parser.known_options = frozenset(options)
    _Parser.commands = tuple(sub.choices)
    return parser


class _PipeSafe:
    """stdout that goes quiet instead of failing when its reader has gone (``lrp-ref ... | head``).

    The command then still writes its files.  The file descriptor is pointed at
    the null device so that the interpreter's last flush succeeds too.
    """

    def __init__(self, stream: Any) -> None:
        self.stream, self.gone = stream, False

    def _drop(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # pragma: no cover - a stream without a descriptor
            pass

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self.stream.write(text))
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 an error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argument error already printed
        return exc.code if isinstance(exc.code, int) else 2
    stdout, sys.stdout = sys.stdout, _PipeSafe(sys.stdout)
    try:
        return int(args.run(args))
    except (CliError, LrpRefError, OSError) as exc:
        print(f"lrp-ref: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrp-ref: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("LRP_REF_TRACEBACK"):
            raise
        print(f"lrp-ref: internal error (a bug in lrp_ref; please report it): {type(exc).__name__}: "
              f"{_one_line(exc)} (set LRP_REF_TRACEBACK=1 to see where)", file=sys.stderr)
        return 2
    finally:
        sys.stdout.flush()
        sys.stdout = stdout


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
