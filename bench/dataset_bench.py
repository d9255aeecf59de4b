"""Benchmark explain_dataset: throughput against plain explain, peak memory at 10k and 60k, Dask 1 -> 2 workers.

    python bench/dataset_bench.py                # 10,000 digits, 3 repeats, memory at 10k and 60k (~15 min, 2 cores)
    python bench/dataset_bench.py --quick        # 2,000 digits, 1 repeat, memory at 2k and 6k
    python bench/dataset_bench.py --help

The data: MNIST-shaped digits synthesised from the 30 shipped test digits (weights/mnist_samples.h5),
each copy shifted by up to 2 pixels in each direction and perturbed by Gaussian noise (sd 8 grey levels),
clipped to 0..255, uint8, in an HDF5 file (MNIST itself is not on this machine). The model: the shipped
CNN (weights/mnist_cnn.h5) in float32, rule epsilon_gamma_box, batch 256, chunks of 1024.

Measured (min over the repeats; the machine is shared, so the minimum is the least disturbed run):

* explain: the whole array already in memory as model inputs, ``lrp_ref.explain`` batch after batch,
  relevance kept (what a user writes without explain_dataset);
* explain_dataset: the same samples from the HDF5 file (raw pixels, preprocessed per chunk), every
  chunk hashed, written compressed to its part, the output assembled; one process;
* Dask: explain_dataset with a LocalCluster of 1 and of 2 single-threaded worker processes (the
  cluster is started and warmed up outside the timing);
* peak memory: the peak resident set size (VmHWM) of a fresh process that runs explain_dataset
  on 10,000 and on 60,000 digits, and of one that only imports lrp_ref and loads the model.

Writes bench/dataset_results.json and bench/dataset_results.md, and puts the tables into
bench/results.md between the markers ``<!-- dataset_bench -->`` and ``<!-- /dataset_bench -->``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import lrp_ref  # noqa: E402
from lrp_ref import catalog  # noqa: E402
from lrp_ref.dataset import explain_dataset  # noqa: E402

CNN = ROOT / "weights" / "mnist_cnn.h5"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"
RULE = "epsilon_gamma_box"
DTYPE = "float32"
START, END = "<!-- dataset_bench -->", "<!-- /dataset_bench -->"


def synthesise(path: Path, n: int, seed: int = 0) -> None:
    """``n`` digits from the 30 shipped ones: shifted (up to 2 px), noisy (sd 8), clipped, uint8; HDF5 ``images``."""
    with h5py.File(SAMPLES, "r") as f:
        base = f["images"][...].astype(np.float64)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", shape=(n, 28, 28), dtype=np.uint8, chunks=(1024, 28, 28))
        for start in range(0, n, 4096):
            k = min(4096, n - start)
            idx = rng.integers(0, len(base), k)
            shifts = rng.integers(-2, 3, size=(k, 2))
            block = np.stack([np.roll(base[i], tuple(s), axis=(0, 1)) for i, s in zip(idx, shifts)])
            block += rng.normal(0, 8, size=block.shape)
            ds[start:start + k] = np.clip(np.rint(block), 0, 255).astype(np.uint8)


def plain_explain(model: lrp_ref.Graph, x: np.ndarray, rules: Any, batch: int) -> float:
    gc.collect()
    t = time.perf_counter()
    out = np.empty(x.shape, dtype=model.dtype)
    for s in range(0, len(x), batch):
        out[s:s + batch] = lrp_ref.explain(model, x[s:s + batch], rules).relevance
    return time.perf_counter() - t


def cpu_seconds(fn: Any, *args: Any) -> tuple[float, float]:
    """(wall, CPU of this process) seconds of ``fn(*args)``: CPU time is less disturbed by other processes."""
    c = time.process_time()
    wall = fn(*args)
    return wall, time.process_time() - c


def timed_dataset(source: str, out: Path, batch: int, chunk: int, client: Any = None) -> float:
    if out.exists():
        out.unlink()
    gc.collect()
    t = time.perf_counter()
    explain_dataset(CNN, source, RULE, out, batch_size=batch, chunk_size=chunk, dtype=DTYPE, raw=True,
                    progress=False, client=client)
    return time.perf_counter() - t


MEMORY_CHILD = """
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import lrp_ref
from lrp_ref.dataset import explain_dataset
model = lrp_ref.load(sys.argv[2])
if sys.argv[3] != "-":
    t = time.perf_counter()
    explain_dataset(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], batch_size=int(sys.argv[6]),
                    chunk_size=int(sys.argv[7]), dtype=sys.argv[8], raw=True, progress=False)
    print("seconds", time.perf_counter() - t)
# VmHWM: this process's peak resident set (ru_maxrss would include the parent's, kept across exec)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("maxrss_kib", hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(source: str | None, out: Path, batch: int, chunk: int) -> tuple[float, float | None]:
    """Peak RSS (MiB) of a fresh process that runs explain_dataset (or, with source None, only loads the model)."""
    args = [sys.executable, "-c", MEMORY_CHILD, str(ROOT), str(CNN), source or "-", RULE, str(out), str(batch),
            str(chunk), DTYPE]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    values = dict(line.split() for line in done.stdout.splitlines())
    seconds = float(values["seconds"]) if "seconds" in values else None
    return int(values["maxrss_kib"]) / 1024, seconds


def cluster_times(n_workers: int, source: str, out: Path, batch: int, chunk: int, repeats: int
                  ) -> tuple[list[float], list[float]]:
    """Wall seconds of each run, and the cores the workers kept busy (their CPU seconds / wall): below the
    number of workers when other processes held the cores."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(n_workers)
        warm = out.with_name("warm.h5")
        timed_dataset(source, warm, batch, chunk, client)  # imports and model loading on every worker
        walls, busy = [], []
        for _ in range(repeats):
            before = client.run(time.process_time)
            walls.append(timed_dataset(source, out, batch, chunk, client))
            after = client.run(time.process_time)
            busy.append(sum(after[k] - before[k] for k in after) / walls[-1])
        return walls, busy


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, big = (2000, 6000) if args.quick else (args.n, args.n_memory)
    repeats = 1 if args.quick else args.repeats
    batch, chunk = args.batch_size, args.chunk_size
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC", "n": n, "n_memory": big,
        "batch_size": batch, "chunk_size": chunk, "repeats": repeats, "rule": RULE, "dtype": DTYPE,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, lrp_ref "
                   f"{lrp_ref.__version__}, loadavg at start {os.getloadavg()[0]:.1f}",
    }
    with tempfile.TemporaryDirectory(prefix="lrp_ref_dataset_bench_") as scratch:
        tmp = Path(scratch)
        data = tmp / "digits.h5"
        synthesise(data, max(n, big))
        # the same n samples for the timed runs: a file of the first n
        small = tmp / "digits_small.h5"
        with h5py.File(data, "r") as f, h5py.File(small, "w") as g:
            g.create_dataset("images", data=f["images"][:n], chunks=(1024, 28, 28))
        source_small = f"{small}:images"
        source_big = f"{data}:images" if big != n else source_small

        model = lrp_ref.load(CNN).astype(DTYPE)
        rules = catalog.from_spec(RULE, (0.0, 1.0))
        with h5py.File(small, "r") as f:
            x = (f["images"][...][:, None].astype(np.float64) * model.metadata["input_scale"]
                 + model.metadata["input_offset"]).astype(DTYPE)
        plain_explain(model, x[:batch], rules, batch)  # warm-up
        explain_t, dataset_t, explain_cpu, dataset_cpu = [], [], [], []
        for _ in range(repeats):  # alternate, so a slow phase of the machine hits both
            wall, cpu = cpu_seconds(plain_explain, model, x, rules, batch)
            explain_t.append(wall)
            explain_cpu.append(cpu)
            wall, cpu = cpu_seconds(timed_dataset, source_small, tmp / "single.h5", batch, chunk)
            dataset_t.append(wall)
            dataset_cpu.append(cpu)
            print(f"explain {explain_t[-1]:.2f}s (CPU {explain_cpu[-1]:.2f}s), explain_dataset {dataset_t[-1]:.2f}s "
                  f"(CPU {dataset_cpu[-1]:.2f}s); load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        del x
        report["explain_s"], report["dataset_s"] = explain_t, dataset_t
        report["explain_cpu_s"], report["dataset_cpu_s"] = explain_cpu, dataset_cpu
        report["loadavg_after_timing"] = os.getloadavg()[0]

        base_rss, _ = peak_rss(None, tmp / "none.h5", batch, chunk)
        rss_small, _ = peak_rss(source_small, tmp / "mem_small.h5", batch, chunk)
        rss_big, big_s = peak_rss(source_big, tmp / "mem_big.h5", batch, chunk)
        report["rss_mib"] = {"model loaded": base_rss, str(n): rss_small, str(big): rss_big}
        report["big_seconds"] = big_s
        print(f"peak RSS: {report['rss_mib']}", file=sys.stderr)

        try:
            import distributed  # noqa: F401
        except ImportError:
            report["dask"] = "not installed (pip install 'lrp_ref[dask]')"
        else:
            report["dask1_s"], report["dask1_busy"] = cluster_times(1, source_small, tmp / "dask1.h5", batch, chunk,
                                                                    repeats)
            report["dask2_s"], report["dask2_busy"] = cluster_times(2, source_small, tmp / "dask2.h5", batch, chunk,
                                                                    repeats)
            print(f"dask 1 worker {report['dask1_s']} (cores busy {report['dask1_busy']}), 2 workers "
                  f"{report['dask2_s']} (cores busy {report['dask2_busy']})", file=sys.stderr)
    return report


def markdown(r: dict[str, Any]) -> str:
    n, big = r["n"], r["n_memory"]
    e, d = min(r["explain_s"]), min(r["dataset_s"])
    lines = [
        "## explain_dataset (issue 13)",
        "",
        f"Run {r['when']}; {r['machine']}. `bench/dataset_bench.py`: {n:,} MNIST-shaped digits synthesised from "
        f"the 30 shipped ones (shifted up to 2 px, noise sd 8, uint8, HDF5), shipped CNN in {r['dtype']}, "
        f"rule {r['rule']}, batch {r['batch_size']}, chunks of {r['chunk_size']}; min of {r['repeats']} run(s).",
        "",
        "| measurement | seconds | images/s | CPU seconds (this process; Dask: the workers) |",
        "|---|---|---|---|",
        f"| explain, batch after batch, array in memory | {e:.2f} | {n / e:,.0f} | {min(r['explain_cpu_s']):.2f} |",
        f"| explain_dataset, one process (HDF5 in, chunks hashed, gzip parts, assembled) | {d:.2f} | {n / d:,.0f} "
        f"| {min(r['dataset_cpu_s']):.2f} |",
    ]
    if "dask1_s" in r:
        d1, d2 = min(r["dask1_s"]), min(r["dask2_s"])
        b1 = r["dask1_busy"][r["dask1_s"].index(d1)]
        b2 = r["dask2_busy"][r["dask2_s"].index(d2)]
        lines += [f"| explain_dataset, Dask LocalCluster, 1 single-threaded worker | {d1:.2f} | {n / d1:,.0f} | "
                  f"workers {d1 * b1:.2f} ({b1:.2f} cores busy) |",
                  f"| explain_dataset, Dask LocalCluster, 2 single-threaded workers | {d2:.2f} | {n / d2:,.0f} | "
                  f"workers {d2 * b2:.2f} ({b2:.2f} cores busy) |"]
    rss = r["rss_mib"]
    lines += ["", "Cores busy: the workers' CPU seconds over the wall time. Two workers can double the throughput "
              "only when both cores are free; below 2 busy cores, other processes held one (the machine is shared).",
              ]
    lines += ["", "| peak resident memory (fresh process) | MiB |", "|---|---|",
              f"| import lrp_ref, load the model | {rss['model loaded']:.0f} |",
              f"| explain_dataset on {n:,} digits | {rss[str(n)]:.0f} |",
              f"| explain_dataset on {big:,} digits | {rss[str(big)]:.0f} |",
              "", "| target | ratio | limit | |", "|---|---|---|---|"]

    def row(name: str, ratio: float, limit: float, at_least: bool) -> str:
        ok = ratio >= limit if at_least else ratio <= limit
        return f"| {name} | {ratio:.2f} | {'>=' if at_least else '<='} {limit} | {'met' if ok else '**not met**'} |"

    lines.append(row("explain_dataset throughput / explain's (same batch size)", e / d, 0.9, True))
    lines.append(row(f"peak memory at {big:,} / at {n:,} digits", rss[str(big)] / rss[str(n)], 1.05, False))
    if "dask1_s" in r:
        lines.append(row("Dask 2 workers / 1 worker (throughput)", min(r["dask1_s"]) / min(r["dask2_s"]), 1.6, True))
    else:
        lines.append(f"| Dask 2 workers / 1 worker | - | >= 1.6 | {r['dask']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 digits, one repeat (a minute or two)")
    parser.add_argument("--n", type=int, default=10_000, help="digits for the timings (default 10,000)")
    parser.add_argument("--n-memory", type=int, default=60_000, help="digits for the second memory run (60,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing; the minimum is reported")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=BENCH, help="where dataset_results.{json,md} go")
    args = parser.parse_args()
    report = run(args)
    md = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset_results.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "dataset_results.md").write_text("# " + md.removeprefix("## "))
    results = args.out / "results.md"
    if results.exists():
        text = results.read_text()
        section = f"{START}\n{md}{END}"
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.DOTALL) \
            if START in text else text.rstrip("\n") + "\n\n" + section + "\n"
        results.write_text(text)
    print(md)


if __name__ == "__main__":
    main()
