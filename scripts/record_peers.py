#!/usr/bin/env python3
"""Record zennit's and Captum's input relevance in conformance vector files.

    scripts/record_peers.py DIR                 # every *.h5 vector in DIR (lrp-ref vectors --out DIR)
    scripts/record_peers.py DIR --library zennit
    scripts/record_peers.py DIR --check         # compare with what is recorded, write nothing

Needs the cross-check environment (scripts/setup_crosscheck.sh: torch, zennit, Captum).

For every vector and every peer that has the vector's rules (zennit: its rules and named
composites, not LRP-0 or depth_based; Captum: EpsilonRule, GammaRule and Alpha1_Beta0_Rule
where lrp_ref's rules under the "captum" profile are exactly those), the script

1. runs the peer on the stored model (via lrp_ref.to_torch, float64), input and target, from
   the peer's own start (zennit: one-hot of /target; Captum: the target output's value);
2. computes lrp_ref's input relevance under the peer's profile (``explain(model, x, rules,
   target=target, profile=<library>)``): the vector's own oracle (/relevance/000) follows its
   profile attribute, usually "lrp_ref", whose conventions differ from the peers';
3. refuses to record unless the two agree to 1e-12 of max|R| (assert_relevance_close);
4. replaces the file's /peers group with

       /peers/<library>/relevance   the peer's input relevance (N, ...); attributes
                                    version (the peer's), torch_version, call (one line:
                                    the exact call), profile (the lrp_ref profile that
                                    reproduces it)
       /peers/<library>/oracle      lrp_ref's input relevance under that profile; attributes
                                    profile, lrp_ref_version

The file is rewritten whole (copy, then rename), so re-running gives the same bytes and
the file does not grow.  Exit status 1 if any peer disagreed (nothing recorded for it) or,
with --check, if anything differs from what is recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("record_peers.py needs torch, zennit and Captum: run scripts/setup_crosscheck.sh "
             "and use .venv-xcheck/bin/python")

import h5py  # noqa: E402
import peers  # noqa: E402  (tests/crosscheck/peers.py)

import lrp_ref  # noqa: E402
from lrp_ref import catalog, vectors  # noqa: E402
from lrp_ref.testing import relevance_error  # noqa: E402

peers.ensure_torchvision()
LIBRARIES = ("zennit", "captum")
RTOL = 1e-12


@dataclass(frozen=True)
class Record:
    library: str
    relevance: np.ndarray
    oracle: np.ndarray
    call: str
    profile: str


def _rules(stored: vectors.StoredVector) -> Any:
    # as lrp_ref.vectors.Case.explain builds them
    return catalog.from_spec(stored.rule_spec, bounds=(0.0, 1.0))


def run_peer(library: str, stored: vectors.StoredVector) -> Record:
    """The peer's relevance and lrp_ref's under the peer's profile; raises peers.NotExpressible."""
    rules = _rules(stored)
    model, x, target = stored.model, stored.x, stored.target
    if not isinstance(model, lrp_ref.Sequential):
        # a sum written as `+` in a module's forward is invisible to zennit's and Captum's module hooks (zennit
        # needs its canonizers' Sum module: tests/crosscheck/test_torchvision.py checks that on torchvision models)
        raise peers.NotExpressible("a graph: the peers' hooks see no residual sum or concatenation in to_torch's "
                                   "module")
    if library == "zennit":
        plan = peers.zennit_plan(model, rules, x.shape)
        oracle = lrp_ref.explain(model, x, rules, target=target, profile="zennit")
        relevance = peers.run_zennit(model, x, plan, peers.one_hot(oracle.output, target))
        call = peers.zennit_call(plan, "one-hot of /target")
    elif library == "captum":
        captum_plan = peers.captum_plan(model, rules)
        oracle = lrp_ref.explain(model, x, rules, target=target, profile="captum")
        relevance = peers.run_captum(model, x, target, captum_plan)
        call = peers.captum_call(model, captum_plan).replace("target=target", "target=/target")
    else:
        raise ValueError(f"unknown library {library!r}")
    return Record(library, relevance, oracle.relevance, call, library)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    if not np.all(np.isfinite(a)):
        return float("inf")
    return relevance_error(a, b)[1]


def _copy_attrs(src: Any, dst: Any) -> None:
    for name in src.attrs:
        dst.attrs.create(name, src.attrs[name], dtype=src.attrs.get_id(name).dtype)


def write_peers(path: Path, records: list[Record]) -> None:
    """Rewrite ``path`` with its /peers group replaced by ``records`` (no /peers if empty)."""
    strings = h5py.string_dtype("utf-8")
    fd, tmp = tempfile.mkstemp(suffix=".h5", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w", track_order=False) as dst:
            _copy_attrs(src, dst)
            for key in src:
                if key != "peers":
                    src.copy(src[key], dst, name=key)
            if records:
                group = dst.create_group("peers")
                for rec in records:
                    sub = group.create_group(rec.library)
                    rel = sub.create_dataset("relevance", data=rec.relevance, track_times=False)
                    for key, value in (("version", version(rec.library)), ("torch_version", torch.__version__),
                                       ("call", rec.call), ("profile", rec.profile)):
                        rel.attrs.create(key, value, dtype=strings)
                    orc = sub.create_dataset("oracle", data=rec.oracle, track_times=False)
                    orc.attrs.create("profile", rec.profile, dtype=strings)
                    orc.attrs.create("lrp_ref_version", lrp_ref.__version__, dtype=strings)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stored_peer(path: Path, library: str) -> tuple[np.ndarray, np.ndarray, dict[str, str]] | None:
    with h5py.File(path, "r") as f:
        if f"peers/{library}/relevance" not in f:
            return None
        g = f[f"peers/{library}"]
        attrs = {k: str(v) for k, v in g["relevance"].attrs.items()}
        return np.asarray(g["relevance"]), np.asarray(g["oracle"]), attrs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="directory of vector files (*.h5)")
    parser.add_argument("--library", action="append", choices=LIBRARIES,
                        help="record only this peer (repeatable; default: all)")
    parser.add_argument("--check", action="store_true",
                        help="compare live results with the recorded ones; write nothing")
    args = parser.parse_args(argv)
    libraries = tuple(args.library or LIBRARIES)
    files = sorted(args.directory.glob("*.h5"))
    if not files:
        print(f"no vector files (*.h5) in {args.directory}", file=sys.stderr)
        return 1

    problems: list[str] = []
    recorded = 0
    for path in files:
        stored = vectors.read_vector(path)
        records: list[Record] = []
        notes: list[str] = []
        for library in libraries:
            try:
                rec = run_peer(library, stored)
            except peers.NotExpressible as exc:
                notes.append(f"{library} -: {exc}")
                continue
            residual = _agreement(rec.relevance, rec.oracle)
            if residual > RTOL:
                problems.append(f"{path.name}: {library} disagrees with lrp_ref (profile {library!r}): "
                                f"{residual:.3e} of max|R|; not recorded. Call: {rec.call}")
                notes.append(f"{library} DISAGREES {residual:.1e}")
                continue
            records.append(rec)
            notes.append(f"{library} {residual:.1e}")
            if args.check:
                kept = _stored_peer(path, library)
                if kept is None:
                    problems.append(f"{path.name}: no recorded /peers/{library}")
                    continue
                relevance, oracle, attrs = kept
                if attrs.get("profile") != library or _agreement(relevance, rec.relevance) > RTOL or \
                        not np.array_equal(oracle, rec.oracle):
                    problems.append(f"{path.name}: recorded /peers/{library} differs from a live run")
        if args.check:
            with h5py.File(path, "r") as f:
                extra = (set(f.get("peers", {})) & set(libraries)) - {r.library for r in records}
            problems.extend(f"{path.name}: /peers/{lib} recorded but not reproduced live" for lib in sorted(extra))
        else:
            write_peers(path, records)
        recorded += len(records)
        print(f"{path.stem:36s} " + "; ".join(notes))

    action = "checked" if args.check else "recorded"
    print(f"{action} {recorded} peer result(s) in {len(files)} file(s) of {args.directory}")
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
