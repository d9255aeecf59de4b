"""``lrp-ref evaluate``: pixel-flipping of the seed's rules and composites on a samples file (:mod:`lrp_ref.evaluate`).

::

    lrp-ref evaluate --model M [--samples FILE] [--rules SPEC ...] [--patch 2] [--steps L] [--per-step 1]
                     [--baseline zero|mean|dataset-mean|blur] [--seed 0] [--random-orders 5] [--out DIR]

Writes ``pixel_flipping.png`` (mean score drop per step, bands: ± one
standard error over the samples, random: ± one standard deviation over the
seeds), ``aopc.md`` and ``aopc.json``; prints the table; a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import catalog, evaluate
from ._cli_inputs import CliError, bounds, fit_layout, to_model_input
from .errors import LrpRefError

__all__ = ["DEFAULT_METHODS", "add_parser", "cmd_evaluate", "save_plot"]

#: the seed's rules and composites (catalog.SEED_COMPARISON) and zennit's EpsilonGammaBox
DEFAULT_METHODS: tuple[tuple[str, str], ...] = (
    *catalog.SEED_COMPARISON, ("\u03b5 + \u03b3 + zB (epsilon_gamma_box)", "epsilon_gamma_box"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import cli  # shared input handling; imported here, cli imports this module

    for option, value in (("--patch", args.patch), ("--steps", args.steps), ("--per-step", args.per_step),
                          ("--random-orders", args.random_orders), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise CliError(f"{option} must be a positive integer; got {value}")
    if not args.blur_sigma > 0:
        raise CliError(f"--blur-sigma must be > 0 (pixels); got {args.blur_sigma}")
    if args.out:
        cli.check_out(args.out)
    model = cli.explained_model(args, args.model)
    images, labels = cli.read_samples(args)
    what = f"--samples {cli.samples_path(args)}"
    x, _, layout = fit_layout(images, model, what)
    x, values = to_model_input(x, model, what, cli.interpretation(args))
    if args.limit is not None:
        x, labels = x[:args.limit], labels[:args.limit]
    if x.ndim != 4:
        raise CliError(f"{what}: pixel-flipping needs images (C, H, W); one sample has shape {x.shape[1:]}")
    methods = [(label, spec) for label, spec in DEFAULT_METHODS] if not args.rules else \
        [(spec, spec) for spec in args.rules]
    if not args.rules and bounds(model) is None:  # the default box rules need the model's input bounds
        left_out = [label for label, spec in methods if catalog.needs_bounds(spec)]
        methods = [(label, spec) for label, spec in methods if not catalog.needs_bounds(spec)]
        if left_out:
            print(f"note: left out {', '.join(left_out)}: the model declares no input bounds (input_low, "
                  "input_high); give them with lrp-ref convert --set, or name a box rule with low=..,high=.. "
                  "in --rules")
    built = []
    for label, spec in methods:
        try:
            built.append((label, catalog.from_spec(spec, bounds(model))))
        except LrpRefError as exc:
            raise CliError(f"--rules {spec!r}: {exc}") from None
    print(f"{len(x)} samples from {cli.samples_path(args)} ({layout}; {values}); model {args.model}")
    total = len(built) + 1 + args.random_orders
    progress = cli.Progress(total, "pixel-flipping")
    try:
        target = np.argmax(model.forward(x), axis=1)
        relevances: dict[str, Any] = {}
        for label, rules in built:
            relevances[label] = cli.run_explain(model, x, rules, label, target=target).relevance
        relevances["gradient x input"] = x * evaluate.gradient(model, x, target)
        result = evaluate.pixel_flipping(
            model, x, relevances, target, patch=args.patch, steps=args.steps, per_step=args.per_step,
            baseline=args.baseline, blur_sigma=args.blur_sigma, seed=args.seed, random_orders=args.random_orders,
            progress=progress.step)
    except LrpRefError as exc:
        raise CliError(str(exc)) from None
    correct = int(np.sum(target == labels)) if labels is not None else None
    header = (f"pixel-flipping (most relevant first; Samek et al. 2017): {len(x)} samples"
              + (f" ({correct} classified correctly)" if correct is not None else "")
              + f", patches {args.patch}x{args.patch}, {result.steps} steps of {args.per_step}, "
                f"baseline {args.baseline}, seed {args.seed}")
    print(header)
    print(result.table())
    if args.out:
        out = cli.prepare_out(args.out)
        (out / "aopc.md").write_text(f"{header}\n\n{result.table()}\n", encoding="utf-8")
        data = {"model": Path(args.model).name, "samples": str(cli.samples_path(args)), **result.to_dict(),
                "specs": dict(methods)}
        (out / "aopc.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        save_plot(result, out / "pixel_flipping.png", f"{Path(args.model).stem}: {header.split(': ', 1)[1]}")
        print(f"wrote {out / 'pixel_flipping.png'}, {out / 'aopc.md'}, {out / 'aopc.json'}")
    return 0


def save_plot(result: evaluate.Evaluation, path: Path, title: str) -> Path:
    """Mean score drop per step for every method (bands: ± s.e. over samples), random with ± s.d. over seeds."""
    from .viz import _require_viz

    plt = _require_viz("the pixel-flipping plot")
    fig, ax = plt.subplots(figsize=(9, 5.2))
    steps = np.arange(result.steps + 1)
    r = result.random
    ax.fill_between(steps, r.curve - r.curve_spread, r.curve + r.curve_spread, color="0.6", alpha=0.35, lw=0)
    ax.plot(steps, r.curve, color="0.3", lw=1.5, ls="--", label=f"random ({len(r.seeds)} seeds)  AOPC {r.aopc:.3f}")
    cmap = plt.get_cmap("tab10")
    styles = ["-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-.", "-.", "-."]
    ordered = sorted(result.methods, key=lambda c: -c.aopc)
    for i, c in enumerate(ordered):
        n = len(c.scores)
        se = c.drops.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(c.curve)
        color = cmap(i % 10)
        ax.fill_between(steps, c.curve - se, c.curve + se, color=color, alpha=0.15, lw=0)
        ax.plot(steps, c.curve, color=color, lw=1.6, ls=styles[i % len(styles)],
                label=f"{result.labels.get(c.method, c.method)}  AOPC {c.aopc:.3f}")
    ax.set_xlabel(f"step k ({result.per_step} patch(es) of {result.patch}x{result.patch} replaced per step, "
                  f"baseline {result.baseline})", fontsize=9)
    ax.set_ylabel("mean f(x) - f(x_k)", fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    """Register ``evaluate`` on the subparsers ``sub``; ``common`` adds the shared model and input options."""
    p = sub.add_parser("evaluate", help="pixel-flipping (most relevant first): AOPC of the rules and composites "
                                        "against random orders and gradient x input", allow_abbrev=False)
    common(p, False)
    p._option_string_actions["--samples"].help = "the digits to evaluate on (default: mnist_samples.h5 beside --model)"
    p.add_argument("--rules", nargs="+", metavar="SPEC",
                   help="rules or composites to compare (default: the seed's comparison and epsilon_gamma_box); "
                        "gradient x input and random orders are always added")
    p.add_argument("--patch", type=int, default=2, help="side of the square patches (must divide the image; "
                                                        "default 2)")
    p.add_argument("--steps", type=int, help="number of flipping steps (default: min(100, patches / per-step))")
    p.add_argument("--per-step", type=int, default=1, help="patches replaced per step (default 1)")
    p.add_argument("--baseline", default="zero", choices=list(evaluate.BASELINES),
                   help="what a removed patch becomes (default zero)")
    p.add_argument("--blur-sigma", type=float, default=2.0, help="pixels, for --baseline blur (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds the random orders and tie-breaking (default 0)")
    p.add_argument("--random-orders", type=int, default=5, help="number of random orders (default 5)")
    p.add_argument("--limit", type=int, help="use only the first N samples")
    p.add_argument("--out", help="folder for pixel_flipping.png, aopc.md and aopc.json")
    p.set_defaults(run=cmd_evaluate)
