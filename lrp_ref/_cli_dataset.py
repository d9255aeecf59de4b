"""``lrp-ref explain-dataset``: :func:`lrp_ref.explain_dataset` from the shell.

::

    lrp-ref explain-dataset --model M --source FILE.h5:DATASET --rule SPEC --out OUT.h5
                            [--batch-size B] [--chunk-size C] [--target T | --targets FILE.h5:LABELS]
                            [--dtype float32] [--preprocessed] [--workers N | --scheduler ADDRESS]

The source holds raw values (for the MNIST models pixels 0..255), mapped by
the model's preprocessing as everywhere in the command line; ``--preprocessed``
takes them as model inputs.  Run the same command again after an
interruption: finished chunks are verified and kept.  ``--workers N`` starts
a local Dask cluster of N single-threaded worker processes, ``--scheduler``
connects to a running one (both need ``pip install 'lrp_ref[dask]'``).
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import catalog, profiles
from ._cli_inputs import CliError, bounds
from ._cli_rules import build
from .dataset import explain_dataset
from .errors import LrpRefError

__all__ = ["add_parser", "cmd_explain_dataset"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``explain-dataset`` on the subparsers ``sub`` of ``lrp-ref``."""
    p = sub.add_parser("explain-dataset", allow_abbrev=False,
                       help="explain a whole dataset into one HDF5 file (chunked, resumable, Dask optional)")
    p.add_argument("--model", required=True, help="model file (lrp_ref HDF5), e.g. weights/mnist_cnn.h5")
    p.add_argument("--source", required=True, metavar="FILE.h5:DATASET",
                   help="the samples: an HDF5 dataset (file.h5:path/in/file) or a .npy file, (N, ...) raw values")
    p.add_argument("--rule", required=True, help=f"NAME[:key=value,...] or FIRST+REST; rules: "
                                                 f"{', '.join(catalog.RULES)}; composites: "
                                                 f"{', '.join(catalog.COMPOSITES)}")
    p.add_argument("--out", required=True, help="output HDF5 file (parts go to OUT.parts until it is assembled)")
    p.add_argument("--batch-size", type=_positive, default=256, help="samples per explain call (default 256)")
    p.add_argument("--chunk-size", type=_positive,
                   help="samples per chunk: one part file, one Dask task, the unit of resuming (default: 4 batches)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--target", type=int, help="class to explain for every sample (default: the predicted class)")
    group.add_argument("--targets", metavar="FILE.h5:DATASET", help="one class per sample, e.g. the labels")
    p.add_argument("--profile", default="lrp_ref", choices=list(profiles.PROFILES), metavar="NAME",
                   help=f"convention profile: {', '.join(profiles.PROFILES)} (default lrp_ref)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="computation dtype")
    p.add_argument("--preprocessed", action="store_true", help="the source holds model inputs, not raw values")
    p.add_argument("--overwrite", action="store_true", help="replace an output or parts of a different run")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, metavar="N",
                       help="run on a local Dask cluster of N single-threaded worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS (tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_explain_dataset)


def _client(args: argparse.Namespace, stack: ExitStack) -> Any:
    if args.workers is None and args.scheduler is None:
        return None
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        option = "--workers" if args.workers is not None else "--scheduler"
        raise CliError(f"{option} needs Dask: pip install 'lrp_ref[dask]' (dask[distributed])") from None
    if args.scheduler is not None:
        try:
            return stack.enter_context(Client(args.scheduler, timeout="10s"))
        except OSError as exc:
            raise CliError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from None
    cluster = stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None))
    return stack.enter_context(Client(cluster))


def cmd_explain_dataset(args: argparse.Namespace) -> int:
    from .cli import open_model

    model = open_model(args.model)
    build(args.rule, model, bounds(model))  # refuses a malformed rule, or a composite that would not be itself
    if Path(args.out).is_dir():
        raise CliError(f"--out {args.out}: is a folder; give the output file, e.g. {Path(args.out) / 'relevance.h5'}")
    with ExitStack() as stack:
        client = _client(args, stack)
        try:
            summary = explain_dataset(args.model, args.source, args.rule, args.out, batch_size=args.batch_size,
                                      chunk_size=args.chunk_size,
                                      target=args.targets if args.targets is not None else args.target,
                                      profile=args.profile, dtype=args.dtype, raw=not args.preprocessed,
                                      progress=not args.quiet, client=client, overwrite=args.overwrite)
        except LrpRefError as exc:  # the library's advice in the command's words
            text = str(exc).replace("overwrite=True", "--overwrite").replace("raw=False", "--preprocessed")
            raise CliError(text) from None
    print(summary)
    return 0 if summary.unbalanced == 0 else 1
