"""``lrp-ref serve``: start the local web demo (see :mod:`lrp_ref.serve`).

::

    lrp-ref serve [--host 127.0.0.1] [--port 8000] [--weights DIR] [--model [NAME=]PATH ...] [--samples FILE]

The shipped models (``mnist_cnn.h5``, ``mnist_mlp.h5``, ``mnist_resnet.h5``)
are found in ``--weights``: by default ``./weights``, else the ``weights``
folder of the source tree lrp_ref runs from (an editable install, as after
``make demo``).  ``--model`` adds any lrp_ref HDF5 model with a 28 x 28
one-channel input.  The command prints the URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import webbrowser
from pathlib import Path
from typing import Any

from ._cli_inputs import CliError

__all__ = ["SHIPPED", "add_serve", "cmd_serve"]

#: the shipped models the page offers, by name
SHIPPED = {"cnn": "mnist_cnn.h5", "mlp": "mnist_mlp.h5", "resnet": "mnist_resnet.h5"}
SAMPLES_FILE = "mnist_samples.h5"


def _default_weights() -> Path | None:
    """``./weights`` if it holds a shipped model, else the source tree's ``weights`` folder, else None."""
    here = Path(__file__).resolve().parent.parent / "weights"
    for folder in (Path("weights"), here):
        if any((folder / name).is_file() for name in SHIPPED.values()):
            return folder
    return None


def _model_arg(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named by the file's stem)."""
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).stem, Path(text)
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH or PATH")
    return name, Path(path)


def models_to_serve(args: argparse.Namespace) -> tuple[dict[str, Path], Path | None]:
    """The models (name -> file) and the samples file for ``args``; a one-line :class:`CliError` if none."""
    weights = Path(args.weights) if args.weights else _default_weights()
    if weights is not None and not weights.is_dir():
        raise CliError(f"--weights {args.weights}: not a folder (expected the folder with "
                       f"{', '.join(SHIPPED.values())})")
    models: dict[str, Path] = {}
    if weights is not None:
        models = {name: weights / f for name, f in SHIPPED.items() if (weights / f).is_file()}
    for name, path in args.model or []:
        if not path.is_file():
            raise CliError(f"--model {path}: no such file (expected an lrp_ref HDF5 model with 28 x 28 input)")
        if name in models and models[name] != path:
            raise CliError(f"--model {path}: the name {name!r} is taken by {models[name]}; give NAME={path}")
        models[name] = path
    if not models:
        raise CliError("no model to serve: no weights folder with the shipped models was found; give --weights DIR "
                       "(the repository's weights/) or --model PATH")
    samples = Path(args.samples) if args.samples else (weights / SAMPLES_FILE if weights is not None else None)
    if args.samples and not Path(args.samples).is_file():
        raise CliError(f"--samples {args.samples}: no such file (expected {SAMPLES_FILE} or a file like it)")
    return models, samples


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Demo, make_server

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="lrp-ref serve: %(message)s")
    models, samples = models_to_serve(args)
    demo = Demo.from_files(models, samples)
    try:
        server = make_server(demo, args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"--port {args.port}: the port is in use on {args.host}; give another --port, or --port 0 "
                           "for any free port") from None
        raise CliError(f"--host {args.host} --port {args.port}: cannot listen there ({exc.strerror or exc})") from None
    names = ", ".join(f"{name} ({path})" for name, path in models.items())
    print(f"models: {names}")
    print(f"shipped digits: {samples if demo.samples is not None else 'none (no samples file)'}")
    print(f"serving the LRP demo at {server.url}  (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def add_serve(sub: Any) -> None:
    """Register ``serve`` on the subparsers ``sub`` of ``lrp-ref``."""
    p = sub.add_parser("serve", help="a local web page: draw a digit and watch LRP explain it, rule by rule",
                       allow_abbrev=False)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--weights", metavar="DIR",
                   help=f"folder with the shipped models {', '.join(SHIPPED.values())} (default: ./weights, else "
                        "the source tree's weights/)")
    p.add_argument("--model", action="append", type=_model_arg, metavar="[NAME=]PATH",
                   help="another lrp_ref HDF5 model with 28 x 28 one-channel input (repeatable)")
    p.add_argument("--samples", metavar="FILE", help=f"shipped digits (default: {SAMPLES_FILE} in --weights)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(run=cmd_serve)
