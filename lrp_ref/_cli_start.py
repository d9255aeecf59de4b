"""``lrp-ref explain --start-at NODE --neuron K | --channel C``: explain an intermediate neuron from the command line.

``--start-at`` names a node (its output tensor is the start): a node name of
a graph, or a layer index of a Sequential (``lrp-ref info`` lists both).
``--neuron`` is a flat index into that tensor's per-sample shape (``337``)
or an index with one entry per axis (``5,2,1``); ``--channel`` takes a whole
channel.  The start relevance is the selected activations, every other entry
zero (:func:`lrp_ref.explain` with ``start_at``).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from ._cli_inputs import CliError
from ._start import plan_start
from .errors import LrpRefError
from .graph import Graph

__all__ = ["add_start_options", "parse_neuron", "start_kwargs"]


def parse_neuron(text: str) -> int | tuple[int, ...]:
    """``K`` (a flat index) or ``A,B,C`` (one index per axis) for ``--neuron`` (argparse type)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected a flat index K or an index A,B,C of non-negative integers "
                                         f"(e.g. 337 or 5,2,1); got {text!r}")
    values = tuple(int(p) for p in parts)
    return values[0] if len(values) == 1 and "," not in text else values


def add_start_options(p: argparse.ArgumentParser) -> None:
    """The options of a start at an intermediate boundary."""
    p.add_argument("--start-at", metavar="NODE",
                   help="explain a neuron of this node's output instead of the class: a layer index of a "
                        "Sequential or a node name of a graph (lrp-ref info lists them); with --neuron or --channel")
    p.add_argument("--neuron", type=parse_neuron, metavar="K|A,B,C",
                   help="with --start-at: the neuron, a flat index into the node's per-sample output shape or one "
                        "index per axis (e.g. 5,2,1 = channel 5, row 2, column 1); the start relevance is its "
                        "activation, all others zero")
    p.add_argument("--channel", type=int, metavar="C", help="with --start-at: start from the whole channel C")


def start_kwargs(args: argparse.Namespace, model: Graph, x_shape: tuple[int, ...]) -> dict[str, Any]:
    """The ``start_at``/``neuron``/``channel`` arguments of :func:`lrp_ref.explain`, checked; {} without --start-at."""
    if args.start_at is None:
        for flag, value in (("--neuron", args.neuron), ("--channel", args.channel)):
            if value is not None:
                raise CliError(f"{flag} needs --start-at NODE, the node whose output holds it (lrp-ref info "
                               "--model ... lists the nodes); for a class give --target")
        return {}
    if args.target is not None:
        raise CliError("--target and --start-at exclude each other: --target picks a class, --start-at with "
                       "--neuron or --channel a neuron inside the network")
    if (args.neuron is None) == (args.channel is None):
        raise CliError(f"--start-at {args.start_at} needs one of --neuron K (or A,B,C) and --channel C, "
                       f"not {'both' if args.neuron is not None else 'neither'}")
    names = [node.name for node in model.nodes]
    start: str | int = args.start_at
    if args.start_at not in names and args.start_at.isdigit():
        start = int(args.start_at)  # a node index of a graph whose names are not numbers
    kwargs = {"start_at": start, "neuron": args.neuron, "channel": args.channel}
    try:
        plan_start(model, x_shape, start, args.neuron, args.channel, None, None, None)
    except LrpRefError as exc:
        text = re.sub(r"\b(start_at|neuron|channel)= ?", lambda m: f"--{m.group(1).replace('_', '-')} ", str(exc))
        raise CliError(text if text.startswith("--") else f"--start-at {args.start_at}: {text}") from None
    return kwargs
