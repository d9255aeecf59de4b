"""Where lrp_ref.explain spends its time: cProfile, grouped into matrix products, im2col, col2im and the rest.

    python bench/profile_explain.py                     # VGG-16 b1 and MNIST CNN b256, float32
    python bench/profile_explain.py --model mnist_cnn --batch 256 --calls 5 --top 15

Run it with ``LRP_REF_THREADS=1 OPENBLAS_NUM_THREADS=1`` for shares of one core's work
(threads would hide work in other threads from the profiler).  The groups:

* matrix products: the time inside ``linear`` and ``vjp`` of the layers themselves
  (OpenBLAS's matmul, which cProfile does not see as a call of its own, plus the
  little Python around it);
* im2col / col2im: the window copies and additions of ``lrp_ref._windows``;
* the rest: the recipe's element-wise steps, pooling, the ledger, checks and Python.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench

import lrp_ref

GROUPS = ("matrix products", "im2col", "col2im", "the rest")


def group(filename: str, name: str) -> str:
    if name in ("linear", "vjp") and filename.endswith(("layers.py", "pooling.py", "norm.py")):
        return "matrix products"
    if filename.endswith("_windows.py") and name in ("copy", "im2col"):
        return "im2col"
    if filename.endswith("_windows.py") and name in ("add", "col2im"):
        return "col2im"
    return "the rest"


def profile(model_name: str, batch: int, dtype: str, calls: int, top: int) -> None:
    model, x = run_bench.build(model_name, batch, dtype)
    for name in run_bench.COMPOSITES:
        comp = run_bench.lrp_composite(name, model_name)
        lrp_ref.explain(model, x, comp)  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            lrp_ref.explain(model, x, comp)
        prof.disable()
        stats = pstats.Stats(prof)
        shares = dict.fromkeys(GROUPS, 0.0)
        for (filename, _, func), entry in stats.stats.items():  # type: ignore[attr-defined]
            shares[group(filename, func)] += entry[2]  # own time of the function
        total = sum(shares.values())
        print(f"{model_name}/b{batch}/{dtype} {name}: {total / calls * 1e3:.0f} ms per call (profiled); "
              + ", ".join(f"{g} {100 * t / total:.0f}%" for g, t in shares.items()))
        if top:
            stats.sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["vgg16", "mnist_cnn"], help="one model (default both)")
    parser.add_argument("--batch", type=int, help="batch size (default 1 for VGG-16, 256 for the MNIST CNN)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--calls", type=int, default=None, help="profiled calls (default 1 for VGG-16, 5 for MNIST)")
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    args = parser.parse_args()
    for model_name in [args.model] if args.model else ["vgg16", "mnist_cnn"]:
        batch = args.batch or (1 if model_name == "vgg16" else 256)
        calls = args.calls or (1 if model_name == "vgg16" else 5)
        profile(model_name, batch, args.dtype, calls, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
