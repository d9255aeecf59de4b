"""``lrp-ref dtd``: the deep Taylor view of one neuron, as a table and a figure (:mod:`lrp_ref.dtd`).

::

    lrp-ref dtd --model M --input sample:K --layer L [--neuron N] [--rule zplus|zb|wsquare|gamma:0.25|epsilon:0.1]
                [--out DIR]

``--rule`` may be repeated; by default every DTD rule that suits the layer
(zB only on a layer that reads the model input, and only if the model declares
its input bounds).  ``--neuron`` is ``k`` for a
Dense layer and ``c,y,x`` for a Conv2d layer; by default the most active neuron.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import dtd
from ._cli_inputs import CliError, bounds
from .errors import LrpRefError
from .graph import Graph
from .layers import Conv2d, Dense
from .rules import Rule

__all__ = ["add_parser", "cmd_dtd", "parse_rule", "save_figure"]

Array = NDArray[Any]

def parse_rule(text: str, model_bounds: Any) -> Rule:
    """``--rule``: :func:`lrp_ref.dtd.rule_from_spec`, its errors naming the option."""
    try:
        return dtd.rule_from_spec(text, model_bounds)
    except LrpRefError as exc:
        raise CliError(f"--rule: {exc}") from None


def _neuron(text: str | None, layer: Dense | Conv2d, a: Array) -> tuple[int, ...]:
    out = layer.forward(a[None])[0]
    if text is None:
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(out)), out.shape))
    try:
        index = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CliError(f"--neuron {text!r}: expected integers, k or c,y,x") from None
    if len(index) != out.ndim or not all(0 <= i < n for i, n in zip(index, out.shape)):
        want = "k" if out.ndim == 1 else "c,y,x"
        raise CliError(f"--neuron {text}: {layer.describe()} has outputs of shape {out.shape}; give {want} within it")
    return index


def cmd_dtd(args: argparse.Namespace) -> int:
    from . import cli  # the shared input handling; imported here, cli imports this module

    if args.out:
        cli.check_out(args.out)
    model: Graph = cli.explained_model(args, args.model)
    inputs = cli.get_inputs(args, model)
    if len(inputs.x) != 1:
        raise CliError(f"--input {args.input}: the DTD view expands one sample; got {len(inputs.x)}")
    try:
        i = dtd._node_index(model, args.layer)
    except LrpRefError as exc:
        raise CliError(f"--layer {args.layer}: {exc}") from None
    layer = model[i]
    if not isinstance(layer, (Dense, Conv2d)):
        linear = [str(j) for j in range(len(model)) if isinstance(model[j], (Dense, Conv2d))]
        raise CliError(f"--layer {args.layer} is {layer.describe()}; the DTD view takes a Dense or "
                       f"Conv2d layer: {', '.join(linear)}")
    a = model.pack(i, model.forward_all(inputs.x))[0]
    neuron = _neuron(args.neuron, layer, a)
    reads_input = model.sources(i) == (0,)
    with_box = reads_input and bounds(model) is not None  # zB needs the model's declared input bounds
    specs = args.rule or (["zplus", "gamma:0.25", "epsilon:0.1", "wsquare"] + (["zb"] if with_box else []))
    rules = [parse_rule(s, bounds(model)) for s in specs]
    print(f"input: {inputs.description}")
    print(f"layer {args.layer}: {layer.describe()}, neuron {neuron}"
          + ("" if dtd.followed_by_relu(model, i) else " (no ReLU after this layer: the relevance model's max(0, .) "
                                                      "is the DTD assumption, not the network's)"))
    checks = []
    for spec, rule in zip(specs, rules):
        try:
            checks.append(dtd.check(layer, a, neuron, rule))
        except LrpRefError as exc:
            where = f"--neuron {args.neuron or ''}".rstrip() if "not active" in str(exc) else f"--rule {spec}"
            raise CliError(f"{where}: {exc}") from None
    print(dtd.summary_table(checks))
    for c in checks:
        print()
        print(c.table())
    if args.out:
        out = cli.prepare_out(args.out)
        path = save_figure(checks, out / "dtd.png", f"{Path(args.model).stem}, {args.input}, "
                                                    f"layer {args.layer} neuron {neuron}")
        print(f"wrote {path}")
    else:
        print("no --out: no figure written")
    return 0 if all(c.ok for c in checks) else 1


def save_figure(checks: Sequence[dtd.TaylorCheck], path: Path, title: str) -> Path:
    """One row per check: the relevance model along the search line with the root and the tangent, and the
    Taylor terms against the rule's messages."""
    from .viz import _require_viz

    plt = _require_viz("the DTD figure")
    fig, axes = plt.subplots(len(checks), 2, figsize=(10, 2.7 * len(checks) + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.5, 1]})
    for (left, right), c in zip(axes, checks):
        e = c.expansion
        t_root = e.t if e.t is not None else (e.t_closed or 1.0)
        lo, hi = min(0.0, t_root), max(0.0, t_root)
        span = max(hi - lo, 1e-12)
        ts = np.linspace(lo - 0.35 * span, hi + 0.35 * span, 400)
        pre = e.pre_activation(ts)
        left.axhline(0, color="0.7", lw=0.8)
        left.plot(ts, e.c * pre, color="0.55", lw=1, ls=":", label="c_k z_k(a - t v) (no ReLU)")
        left.plot(ts, e.c * np.maximum(pre, 0), color="C0", lw=2, label="relevance model R̂_k(a - t v)")
        if e.t is not None:
            left.plot(ts, e.tangent(ts), color="C3", lw=1.2, ls="--",
                      label="tangent at the root")
            left.plot([e.t], [e.value_at_root], "o", color="C3", ms=7)
            left.annotate("root ã", (e.t, e.value_at_root), textcoords="offset points", xytext=(6, -14), fontsize=8)
        if e.root is not None:
            domain = {"relu": "a >= 0", "box": "l <= a <= h", "real": "R^d"}[e.direction.domain]
            outside = any(f.kind == "outside_domain" for f in c.failures)
            field = e.root[np.abs(e.weights) > 0]
            left.text(0.02, 0.04, f"t = {e.t:.4g};  root entries in the receptive field: {field.min():.3g} .. "
                                  f"{field.max():.3g}\ndomain {domain}: {'NOT met' if outside else 'met'}",
                      transform=left.transAxes, fontsize=7.5, va="bottom",
                      bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
        left.plot([0], [e.relevance], "s", color="C0", ms=7)
        left.annotate("a (R_k)", (0, e.relevance), textcoords="offset points", xytext=(6, 4), fontsize=8)
        left.set_xlabel("t  (point a - t v)", fontsize=8)
        left.set_ylabel("relevance", fontsize=8)
        left.set_title(f"{e.rule!r}: v_j = {e.direction.formula}", fontsize=9)
        left.tick_params(labelsize=7)
        left.legend(fontsize=7, loc="best")
        inside = np.abs(e.weights) > 0
        terms, msgs = e.terms[inside], c.messages[inside]
        right.plot(msgs, terms, ".", color="C2", ms=4)
        both = np.concatenate([terms, msgs, [0.0]])
        both = both[np.isfinite(both)]
        edge = [float(both.min()), float(both.max())]
        right.plot(edge, edge, color="0.6", lw=0.8)
        right.set_xlabel("rule's message R_{j<-k}", fontsize=8)
        right.set_ylabel("Taylor term at the root", fontsize=8)
        status = "ok" if c.ok else ", ".join(dict.fromkeys(f.kind for f in c.failures))
        right.set_title(f"max |term - message| = {c.max_error:.1e}\n{status}", fontsize=9)
        right.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    """Register ``dtd`` on the subparsers ``sub``; ``common`` adds the shared model and input options."""
    p = sub.add_parser("dtd", help="the deep Taylor view of one neuron: search direction, root, Taylor terms "
                                   "against the rule's messages", allow_abbrev=False)
    common(p, False)
    p.add_argument("--input", default="sample:0", help="sample:K or a .npy/.h5/.png file of one sample (default "
                                                       "sample:0)")
    p.add_argument("--layer", required=True, help="index (or node name) of a Dense or Conv2d layer")
    p.add_argument("--neuron", help="k (Dense) or c,y,x (Conv2d); default: the most active neuron")
    p.add_argument("--rule", action="append",
                   help="zplus, zb, wsquare, gamma:G, epsilon:E or lrp0 (repeatable; default: every DTD rule that "
                        "suits the layer)")
    p.add_argument("--grey", action="store_true", help="convert a colour PNG to grey")
    p.add_argument("--out", help="folder for the figure dtd.png")
    p.set_defaults(run=cmd_dtd)
