#!/usr/bin/env python3
"""Record the Montavon et al. tutorial's two LRP loops into golden files, for ``make test`` (no torch there).

    scripts/record_tutorial.py [DIR]            # default tests/golden/tutorial; `make tutorial-peer`
    scripts/record_tutorial.py [DIR] --check    # compare with what is recorded, write nothing

Needs torch (the VGG loop): run it with the cross-check environment's python
(scripts/setup_crosscheck.sh).  The loops are re-implemented in tests/crosscheck/tutorial_loops.py.

One file per case, ``DIR/<case>.h5``:

    attributes   format "lrp_ref-tutorial-golden", case, loop ("mlp" or "vgg"),
                 parameters (JSON: the keyword arguments of lrp_ref.composites.tutorial_vgg
                 that give the tutorial's assignment on this model, beside the bounds),
                 assignment (text: the tutorial's rho / incr for every layer index),
                 lrp_ref_rules (text: the lrp_ref rule of every layer under profile="tutorial"),
                 numpy_version, torch_version (vgg)
    /model             the network in lrp_ref's format (lrp_ref.io.write_model)
    /x                 input batch (3, ...); /target (3,) int64, the arg-max outputs
    /low, /high        the zB bounds (scalars for the MLP; per channel (1, 3, 1, 1) for the VGG net)
    /relevance         the loop's input relevance on the whole batch
    /relevance_single  the loop's input relevance on each sample alone, stacked (its RMS
                       layers make it differ from /relevance: the tutorial depends on the batch)

Before writing, lrp_ref is checked against the loop (1e-10 of max|R|), so a file never
records a disagreement.  Exit status 1 if it disagrees or, with --check, if a file differs
from a fresh run by more than 1e-13 of max|R|.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("record_tutorial.py needs torch: run scripts/setup_crosscheck.sh and use .venv-xcheck/bin/python")

import h5py  # noqa: E402
import tutorial_loops as T  # noqa: E402  (tests/crosscheck/tutorial_loops.py)

import lrp_ref  # noqa: E402
from lrp_ref import composites  # noqa: E402
from lrp_ref.io import write_model  # noqa: E402
from lrp_ref.testing import assert_relevance_close, relevance_error  # noqa: E402

FORMAT = "lrp_ref-tutorial-golden"


def oracle(case: dict[str, Any], x: np.ndarray, target: np.ndarray) -> lrp_ref.Explanation:
    rules = composites.tutorial_vgg(case["low"], case["high"], **json.loads(case["parameters"]))
    return lrp_ref.explain(case["model"], x, rules, target=target, profile="tutorial")


def write(case: dict[str, Any], path: Path) -> None:
    e = oracle(case, case["x"], case["target"])
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["case"] = case["name"]
            f.attrs["loop"] = case["loop"]
            f.attrs["parameters"] = case["parameters"]
            f.attrs["assignment"] = case["assignment"]
            f.attrs["lrp_ref_rules"] = composites.describe_rules(case["model"], e.rules)
            f.attrs["numpy_version"] = np.__version__
            if case["loop"] == "vgg":
                f.attrs["torch_version"] = str(torch.__version__)
            write_model(f.create_group("model"), case["model"])
            for key in ("x", "target", "low", "high", "relevance", "relevance_single"):
                f.create_dataset(key, data=np.asarray(case[key]), track_times=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=str(ROOT / "tests" / "golden" / "tutorial"))
    parser.add_argument("--check", action="store_true", help="compare with the recorded files, write nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in T.GOLDEN:
        case = T.golden_case(name)
        path = out / f"{name}.h5"
        single = np.concatenate([oracle(case, case["x"][i:i + 1], case["target"][i:i + 1]).relevance
                                 for i in range(len(case["x"]))])
        errors = {"batch": relevance_error(oracle(case, case["x"], case["target"]).relevance, case["relevance"])[1],
                  "single": relevance_error(single, case["relevance_single"])[1]}
        shift = relevance_error(case["relevance_single"], case["relevance"])[1]
        print(f"{name}: lrp_ref vs the loop {errors['batch']:.2e} (batch), {errors['single']:.2e} (one by one) "
              f"of max|R|; batch vs one by one {shift:.2e}")
        if max(errors.values()) > 1e-10:
            print(f"  {name}: lrp_ref disagrees with the tutorial loop: not recorded")
            failed = True
            continue
        if args.check:
            if not path.exists():
                print(f"  {path}: missing")
                failed = True
                continue
            with h5py.File(path, "r") as f:
                for key in ("relevance", "relevance_single"):
                    try:
                        assert_relevance_close(case[key], f[key][()], rtol=1e-13, what=f"{path.name}:{key}")
                    except AssertionError as exc:
                        print(f"  {exc}")
                        failed = True
        else:
            write(case, path)
            print(f"  wrote {path} ({path.stat().st_size} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
