#!/usr/bin/env python3
"""Record iNNvestigate's input relevance for every LRP analyzer into tests/golden/innvestigate/.

    scripts/record_innvestigate.py [DIR]           # default tests/golden/innvestigate
    scripts/record_innvestigate.py [DIR] --check   # compare with what is recorded, write nothing
    scripts/record_innvestigate.py [DIR] --net cnn_max   # one network only
    scripts/record_innvestigate.py [DIR] --keras-files   # also save each Keras twin as a .h5 file
    scripts/record_innvestigate.py [DIR] --keras-files-only   # only that, against the recorded analyzers

Needs the iNNvestigate environment (scripts/setup_innvestigate.sh: TensorFlow CPU 2.14.1,
numpy < 2, iNNvestigate 2.1.2): ``make innvestigate-peer``.  For the networks and inputs of the
live cross-check (tests/crosscheck_innvestigate), every analyzer of analyzers.ANALYZERS runs
on the network's Keras twin; the script refuses to record a result unless lrp_ref's "innvestigate"
profile reproduces it to 1e-10 of max|R|.  One file per network::

    /                    attributes: format = "lrp_ref-peer", library = "innvestigate",
                         innvestigate_version, tensorflow_version, profile = "innvestigate", net
    /model               the network in lrp_ref's layout (lrp_ref.io.write_model)
    /inputs/<kind>       (N, ...) NCHW input
    /cases/<kind>/<key>  (N, ...) iNNvestigate's input relevance, NCHW; attributes analyzer
                         (the create_analyzer name) and kwargs (JSON)

``make test`` (tests/test_innvestigate_golden.py) checks the profile against these files
without TensorFlow.  Re-running writes the same numbers (the file is rewritten whole).

With ``--keras-files [KDIR]`` (default tests/fixtures/keras/innvestigate) each network's Keras
twin is also saved the way an iNNvestigate user saves a model, ``model.save("<net>.h5")``
(tf.keras's legacy HDF5; iNNvestigate runs TensorFlow in graph mode, where tf.keras 2.14 cannot
write the ``.keras`` zip), and kept only if ``lrp_ref.from_keras`` of the file computes the
Keras model's output (1e-12) and, explained with ``profile="innvestigate"``, reproduces every
analyzer to 1e-10 of max|R|.  ``--keras-files-only`` does the same against the analyzers recorded
in DIR (which must be of the same networks) without running iNNvestigate again.
tests/test_keras_innvestigate.py checks those files against the recorded analyzers in ``make
test``; tests/crosscheck_innvestigate/test_keras_files.py against iNNvestigate live.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "crosscheck_innvestigate"))

import warnings  # noqa: E402

warnings.simplefilter("ignore")  # TensorFlow 2.14's own deprecation warnings on import

try:
    import innvestigate
    import tensorflow as tf
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("record_innvestigate.py needs TensorFlow and iNNvestigate: run scripts/setup_innvestigate.sh "
             "and use .venv-innvestigate/bin/python")

tf.compat.v1.disable_eager_execution()
tf.keras.backend.set_floatx("float64")

import h5py  # noqa: E402
import keras_nets  # noqa: E402
import numpy as np  # noqa: E402
from analyzers import ANALYZERS, lrp_ref_rules  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref.io import read_model, write_model  # noqa: E402
from lrp_ref.testing import relevance_error  # noqa: E402

RTOL = 1e-10


KERAS_FILES = ROOT / "tests" / "fixtures" / "keras" / "innvestigate"


def run(net: str) -> tuple[lrp_ref.Sequential, dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], float, Any]:
    model, shape = keras_nets.random_net(net, seed=sum(map(ord, net)))
    keras_model = keras_nets.to_keras(model, shape)
    inputs = {kind: keras_nets.explained_inputs(net, shape, kind, model) for kind in keras_nets.INPUTS}
    cases: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in inputs}
    worst = 0.0
    for key, (name, kwargs, _) in ANALYZERS.items():
        analyzer = innvestigate.create_analyzer(name, keras_model, **kwargs)
        for kind, x in inputs.items():
            theirs = keras_nets.to_nchw(analyzer.analyze(keras_nets.to_nhwc(x)))
            ours = lrp_ref.explain(model, x, lrp_ref_rules(key, model), profile="innvestigate").relevance
            err = relevance_error(theirs, ours)[1]
            worst = max(worst, err)
            if err > RTOL:
                raise SystemExit(f"{net}/{kind}/{key}: lrp_ref differs from iNNvestigate by {err:.3g} of max|R|; "
                                 "nothing recorded")
            cases[kind][key] = theirs
        print(f"  {net:12s} {key:22s} worst so far {worst:.2e}", flush=True)
    return model, inputs, cases, worst, keras_model


def recorded(path: Path, model: lrp_ref.Sequential) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """The inputs and iNNvestigate's relevances recorded in ``path``, checked to be of ``model``."""
    with h5py.File(path, "r") as f:
        theirs = read_model(f["model"])
        inputs = {kind: f[f"inputs/{kind}"][()] for kind in f["inputs"]}
        cases = {kind: {key: d[()] for key, d in f[f"cases/{kind}"].items()} for kind in f["cases"]}
    for x in inputs.values():
        if not np.array_equal(theirs.forward(x), model.forward(x)):
            raise SystemExit(f"{path}: recorded on another network than {path.stem}'s; record it again")
    return inputs, cases


def keras_file(net: str, keras_model: Any, inputs: dict[str, np.ndarray], cases: dict[str, dict[str, np.ndarray]],
               out: Path) -> float:
    """Save ``keras_model`` as ``out/<net>.h5`` if from_keras of it reproduces every case; the worst error."""
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".h5")
    os.close(fd)
    try:
        keras_model.save(tmp)
        imported = lrp_ref.from_keras(tmp)
        worst = 0.0
        for kind, x in inputs.items():
            y = keras_model.predict(keras_nets.to_nhwc(x), verbose=0)
            forward = np.abs(imported.forward(x) - y).max() / np.abs(y).max()
            if forward > 1e-12:
                raise SystemExit(f"{net}: from_keras of the saved file computes the Keras output only to "
                                 f"{forward:.3g}; nothing written")
            for key, theirs in cases[kind].items():
                ours = lrp_ref.explain(imported, x, lrp_ref_rules(key, imported), profile="innvestigate").relevance
                err = relevance_error(theirs, ours)[1]
                worst = max(worst, err)
                if err > RTOL:
                    raise SystemExit(f"{net}/{kind}/{key}: from_keras of the saved file differs from iNNvestigate "
                                     f"by {err:.3g} of max|R|; nothing written")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / f"{net}.h5")
        return worst
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write(path: Path, net: str, model: lrp_ref.Sequential, inputs: dict[str, np.ndarray],
          cases: dict[str, dict[str, np.ndarray]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".h5")
    os.close(fd)
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs.update({"format": "lrp_ref-peer", "library": "innvestigate", "net": net, "profile": "innvestigate",
                        "innvestigate_version": version("innvestigate"), "tensorflow_version": tf.__version__})
        write_model(f.create_group("model"), model)
        for kind, x in inputs.items():
            f.create_dataset(f"inputs/{kind}", data=x, track_times=False)
            for key, r in cases[kind].items():
                d = f.create_dataset(f"cases/{kind}/{key}", data=r, track_times=False)
                d.attrs["analyzer"] = ANALYZERS[key][0]
                d.attrs["kwargs"] = json.dumps(ANALYZERS[key][1])
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check(path: Path, inputs: dict[str, np.ndarray], cases: dict[str, dict[str, np.ndarray]]) -> list[str]:
    problems = []
    with h5py.File(path, "r") as f:
        for kind, by_key in cases.items():
            if not np.array_equal(f[f"inputs/{kind}"][()], inputs[kind]):
                problems.append(f"{path.name}: /inputs/{kind} differs")
            for key, r in by_key.items():
                err = relevance_error(f[f"cases/{kind}/{key}"][()], r)[1]
                if err > 1e-12:
                    problems.append(f"{path.name}: /cases/{kind}/{key} differs by {err:.3g} of max|R|")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("dir", nargs="?", default=str(ROOT / "tests" / "golden" / "innvestigate"))
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--net", action="append", choices=keras_nets.NETS,
                        help="only this network (repeatable; default: all)")
    parser.add_argument("--keras-files", nargs="?", const=str(KERAS_FILES), default=None, metavar="KDIR",
                        help=f"also save each Keras twin as KDIR/<net>.h5 (default {KERAS_FILES.relative_to(ROOT)}), "
                             "checked through lrp_ref.from_keras")
    parser.add_argument("--keras-files-only", action="store_true",
                        help="save the Keras twins (to --keras-files or its default), checked against the analyzers "
                             "recorded in DIR, without running iNNvestigate")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    if args.keras_files_only:
        for net in args.net or keras_nets.NETS:
            model, shape = keras_nets.random_net(net, seed=sum(map(ord, net)))
            inputs, cases = recorded(out / f"{net}.h5", model)
            worst = keras_file(net, keras_nets.to_keras(model, shape), inputs, cases,
                               Path(args.keras_files or KERAS_FILES))
            print(f"{net}: saved the Keras twin; from_keras of it reproduces the {sum(map(len, cases.values()))} "
                  f"recorded cases, worst {worst:.2e} of max|R|")
        return 0
    for net in args.net or keras_nets.NETS:
        model, inputs, cases, worst, keras_model = run(net)
        path = out / f"{net}.h5"
        print(f"{net}: {sum(map(len, cases.values()))} cases, worst {worst:.2e} of max|R|")
        if args.keras_files and not args.check:
            imported = keras_file(net, keras_model, inputs, cases, Path(args.keras_files))
            print(f"{net}: saved the Keras twin; from_keras of it reproduces every case, worst {imported:.2e}")
        if args.check:
            problems += check(path, inputs, cases)
        else:
            write(path, net, model, inputs, cases)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
