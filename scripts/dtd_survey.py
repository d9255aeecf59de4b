"""The deep Taylor check (lrp_ref.dtd) on many neurons of the shipped models: how often do the assumptions hold?

For each (model, layer, rule), N random active neurons on each of three shipped digits are expanded; the
script prints how many pass every check, which failures occur, and the largest |Taylor term - message|.

    python scripts/dtd_survey.py [--neurons 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import h5py
import numpy as np

import lrp_ref
from lrp_ref import dtd

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ("cnn", 0, ("zb", "wsquare", "zplus", "gamma:0.25", "epsilon:0.1")),
    ("cnn", 3, ("zplus", "gamma:0.25", "epsilon:0.1", "wsquare")),
    ("mlp", 1, ("zb", "wsquare")),
    ("mlp", 3, ("zplus", "gamma:0.25", "epsilon:0.1")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=200, help="active neurons per digit (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        images = f["images"][[0, 10, 20]]
    print(f"{'model':<6} {'layer':>5} {'rule':<22} {'neurons':>7}  {'max |term - message|':>20}  outcome")
    for name, layer, specs in CASES:
        model = lrp_ref.load(ROOT / "weights" / f"mnist_{name}.h5")
        for spec in specs:
            counts: collections.Counter[str] = collections.Counter()
            worst = 0.0
            for image in images:
                x = (image / 255.0)[None, None]
                a = model.forward_all(x)[layer][0]
                active = np.argwhere(model[layer].forward(a[None])[0] > 0)
                for k in active[rng.choice(len(active), size=min(args.neurons, len(active)), replace=False)]:
                    c = dtd.check_model(model, x, layer, tuple(int(i) for i in k), spec)
                    counts["ok" if c.ok else "+".join(sorted({f.kind for f in c.failures}))] += 1
                    worst = max(worst, c.max_error)
            outcome = ", ".join(f"{kind} {n}" for kind, n in counts.most_common())
            print(f"{name:<6} {layer:>5} {spec:<22} {sum(counts.values()):>7}  {worst:>20.1e}  {outcome}", flush=True)


if __name__ == "__main__":
    main()
