"""Benchmark lrp_ref against zennit and Captum on a VGG-16-shaped network and the shipped MNIST CNN.

    python bench/run_bench.py                 # the full matrix (about 30 minutes on 2 cores)
    python bench/run_bench.py --quick         # what the targets need: VGG-16 batch 1 (float32, float64), MNIST b256
    python bench/run_bench.py --quick --no-breakdown   # without the per-change breakdown
    python bench/run_bench.py --help

Writes bench/results.json (every measurement) and bench/results.md (tables, ratios,
the targets of issue 13 marked met / not met, threads on and off, and with --breakdown
what each change of issue 13 saved).  See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))
if "--worker" in sys.argv:  # a breakdown worker times the lrp_ref of another revision: its tree comes first
    sys.path.insert(0, json.loads(sys.argv[sys.argv.index("--worker") + 1])["tree"])

import lrp_ref  # noqa: E402
import lrp_ref._windows  # noqa: E402
from lrp_ref import Conv2d, Dense, Flatten, MaxPool2d, ReLU, Sequential, composites  # noqa: E402

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box")

# ----------------------------------------------------------------------------- models


def vgg16(dtype: Any = np.float32, seed: int = 0) -> Sequential:
    """VGG-16 shape (configuration D) with He-initialised random weights: no download.

    13 conv 3x3 (padding 1) + ReLU, 5 max-pools 2x2, Flatten, Dense 25088 -> 4096 -> 4096 -> 1000.
    Weights ~ N(0, 2 / fan_in), biases ~ N(0, 0.01^2), drawn in float32 from ``seed``.
    """
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers: list[Any] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, dtype=dt))
            continue
        assert isinstance(v, int)
        w = rng.standard_normal((v, c, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2.0 / (9 * c)))
        b = rng.standard_normal(v, dtype=np.float32) * np.float32(0.01)
        layers += [Conv2d(w, b, padding=1, dtype=dt), ReLU(dtype=dt)]
        c = v
    layers.append(Flatten(dtype=dt))
    sizes = [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]
    for i, (n_in, n_out) in enumerate(sizes):
        w = rng.standard_normal((n_out, n_in), dtype=np.float32) * np.float32(np.sqrt(2.0 / n_in))
        b = rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.01)
        layers.append(Dense(w, b, dtype=dt))
        if i < len(sizes) - 1:
            layers.append(ReLU(dtype=dt))
    return Sequential(layers)


def vgg_input(batch: int, dtype: Any, seed: int = 1) -> np.ndarray:
    """Uniform [0, 1) images, so that zB's bounds (0, 1) hold."""
    return np.random.default_rng(seed).uniform(0, 1, (batch, 3, 224, 224)).astype(dtype)


def mnist_cnn(dtype: Any) -> Sequential:
    return lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5").astype(dtype)


def mnist_input(batch: int, dtype: Any) -> np.ndarray:
    """The 30 shipped test digits, repeated to ``batch``, with the model's preprocessing."""
    import h5py

    model = lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5")
    meta = model.metadata
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        raw = f["images"][()]
    x = raw.astype(np.float64) * meta["input_scale"] + meta["input_offset"]
    x = x[np.arange(batch) % len(x)][:, None]
    return np.clip(x, meta["input_low"], meta["input_high"]).astype(dtype)


def bounds(model_name: str) -> tuple[float, float]:
    """The input bounds (low, high) for zB."""
    if model_name == "vgg16":
        return 0.0, 1.0
    meta = lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5").metadata
    return float(meta["input_low"]), float(meta["input_high"])


def build(model_name: str, batch: int, dtype: str) -> tuple[Sequential, np.ndarray]:
    if model_name == "vgg16":
        return vgg16(dtype), vgg_input(batch, dtype)
    return mnist_cnn(dtype), mnist_input(batch, dtype)


def lrp_composite(name: str, model_name: str) -> Any:
    if name == "epsilon_plus_flat":
        return composites.epsilon_plus_flat()
    low, high = bounds(model_name)
    return composites.epsilon_gamma_box(low=low, high=high)


# ----------------------------------------------------------------------------- peers (PyTorch)


def import_peers() -> dict[str, Any]:
    """torch, zennit and captum if importable; zennit needs torchvision or the stand-in in tests/crosscheck/stubs."""
    peers: dict[str, Any] = {}
    try:
        import torch
    except ImportError as exc:
        return {"error": f"torch not importable ({exc})"}
    peers["torch"] = torch
    # torchvision (imported by zennit): the real one despite its CUDA-built C ops, or the stand-in where missing
    sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))
    from tolerant_torchvision import import_torchvision

    import_torchvision()
    try:
        import zennit.attribution
        import zennit.composites

        peers["zennit"] = zennit
    except ImportError as exc:
        peers["zennit_error"] = str(exc)
    try:
        import captum.attr

        peers["captum"] = captum
    except ImportError as exc:
        peers["captum_error"] = str(exc)
    return peers


def to_torch(model: Sequential, torch: Any) -> Any:
    """The same network in PyTorch (features, torch.flatten, classifier), sharing lrp_ref's weights by copy."""
    nn = torch.nn
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32

    def param(a: np.ndarray) -> Any:
        return nn.Parameter(torch.tensor(np.array(a), dtype=dtype), requires_grad=False)

    features: list[Any] = []
    classifier: list[Any] = []
    target = features
    for layer in model:
        if isinstance(layer, Conv2d):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                          bias=layer.bias is not None)
            m.weight = param(layer.weight)
            if layer.bias is not None:
                m.bias = param(layer.bias)
        elif isinstance(layer, Dense):
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
            m.weight = param(layer.weight)
            if layer.bias is not None:
                m.bias = param(layer.bias)
        elif isinstance(layer, ReLU):
            m = nn.ReLU()
        elif isinstance(layer, MaxPool2d):
            m = nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)
        elif isinstance(layer, Flatten):
            target = classifier  # flattened in forward(): Captum's LRP has no rule for nn.Flatten
            continue
        else:
            raise TypeError(f"no PyTorch counterpart for {layer.describe()}")
        target.append(m)

    class Net(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(*classifier)

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.features(x), 1))

    return Net().to(dtype).eval()


def zennit_composite(name: str, model_name: str, zennit: Any) -> Any:
    if name == "epsilon_plus_flat":
        return zennit.composites.EpsilonPlusFlat()
    low, high = bounds(model_name)
    return zennit.composites.EpsilonGammaBox(low=low, high=high)


def set_captum_rules(net: Any, name: str, captum: Any, torch: Any) -> None:
    """Captum's closest rules to the composite: z+ (Alpha1_Beta0) or gamma on conv, epsilon on dense.

    Captum has neither the flat nor the zB rule, so its first layer takes the conv rule.
    """
    rules = captum.attr._utils.lrp_rules
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.rule = rules.Alpha1_Beta0_Rule() if name == "epsilon_plus_flat" else rules.GammaRule(gamma=0.25)
        elif isinstance(m, torch.nn.Linear):
            m.rule = rules.EpsilonRule(epsilon=1e-6)
        elif isinstance(m, torch.nn.MaxPool2d):
            m.rule = rules.EpsilonRule(epsilon=1e-6)


# ----------------------------------------------------------------------------- what is timed


@dataclass
class Config:
    model: str       # "vgg16" or "mnist_cnn"
    batch: int
    dtype: str       # "float32" or "float64"
    repeats: int

    @property
    def key(self) -> str:
        return f"{self.model}/b{self.batch}/{self.dtype}"


def one_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` with lrp_ref's thread pool off (``LRP_REF_THREADS=1``, read at every call); BLAS threads as they are."""
    saved = os.environ.get("LRP_REF_THREADS")
    os.environ["LRP_REF_THREADS"] = "1"
    try:
        return fn()
    finally:
        if saved is None:
            del os.environ["LRP_REF_THREADS"]
        else:
            os.environ["LRP_REF_THREADS"] = saved


def callables(cfg: Config, impls: list[str], peers: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """name -> a function running one measurement; names as 'impl' or 'impl:composite'."""
    model, x = build(cfg.model, cfg.batch, cfg.dtype)
    fns: dict[str, Callable[[], Any]] = {}
    comps = {name: lrp_composite(name, cfg.model) for name in COMPOSITES}
    if "lrp_ref" in impls:
        fns["lrp_ref:forward"] = lambda: model.forward(x)
        for name, comp in comps.items():
            fns[f"lrp_ref:{name}"] = lambda comp=comp: lrp_ref.explain(model, x, comp)
            if "threads" in impls:  # the same with the thread pool off (LRP_REF_THREADS=1)
                fns[f"lrp_ref[1 thread]:{name}"] = lambda comp=comp: one_thread(lambda: lrp_ref.explain(model, x, comp))
    torch = peers.get("torch")
    if torch is None or not ({"torch", "zennit", "captum"} & set(impls)):
        return fns
    net = to_torch(model, torch)
    xt = torch.from_numpy(np.array(x))
    with torch.no_grad():
        out = net(xt)
    target = out.argmax(1)
    one_hot = torch.nn.functional.one_hot(target, out.shape[1]).to(out.dtype)
    if "torch" in impls:
        def forward() -> Any:
            with torch.no_grad():
                return net(xt)

        def forward_grad() -> Any:
            xg = xt.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(net(xg), xg, one_hot)
            return grad

        fns["torch:forward"] = forward
        fns["torch:forward+grad"] = forward_grad
    if "zennit" in impls and "zennit" in peers:
        zennit = peers["zennit"]
        if "lrp_ref" in impls:  # the same computation as zennit's (its conventions: generalised gamma, ...)
            for name, comp in comps.items():
                fns[f"lrp_ref[zennit]:{name}"] = lambda comp=comp: lrp_ref.explain(model, x, comp, profile="zennit")
        for name in COMPOSITES:
            def run_zennit(name: str = name) -> Any:
                composite = zennit_composite(name, cfg.model, zennit)
                with zennit.attribution.Gradient(model=net, composite=composite) as attributor:
                    _, relevance = attributor(xt, one_hot)
                return relevance

            fns[f"zennit:{name}"] = run_zennit
    if "captum" in impls and "captum" in peers:
        captum = peers["captum"]
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        for name in COMPOSITES:
            def run_captum(name: str = name) -> Any:
                set_captum_rules(net, name, captum, torch)
                return captum.attr.LRP(net).attribute(xt, target=target)

            fns[f"captum:{name}"] = run_captum
    return fns


def agreement(results: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """How close zennit's input relevance is to lrp_ref's: a check that the timed computations match.

    zennit starts from a one-hot, lrp_ref from the explained score f(x): zennit's map
    is rescaled per sample.  ``max_diff_zennit_profile`` compares with lrp_ref under
    zennit's conventions (the same computation: ~1e-15 in float64);
    ``correlation_default`` with lrp_ref's own conventions, which differ from
    zennit's in the gamma rule and in bias handling (visible on the trained MNIST CNN).
    """
    out: dict[str, Any] = {}
    for name in COMPOSITES:
        theirs = results.get(f"zennit:{name}")
        if theirs is None:
            continue
        entry: dict[str, float] = {}
        for key, ours in (("default", results.get(f"lrp_ref:{name}")),
                          ("zennit_profile", results.get(f"lrp_ref[zennit]:{name}"))):
            if ours is None:
                continue
            r = ours.relevance.astype(np.float64)
            z = theirs.detach().numpy().astype(np.float64) * ours.score.reshape(-1, *([1] * (r.ndim - 1)))
            scale = np.abs(r).max()
            if key == "default":
                entry["correlation_default"] = float(np.corrcoef(r.ravel(), z.ravel())[0, 1])
            else:
                entry["max_diff_zennit_profile"] = float(np.abs(r - z).max() / scale) if scale else 0.0
        out[name] = entry
    return out


def wait_idle(max_wait: float, window: float = 1.0, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores; the time waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        other = cpu_seconds_elsewhere()
        time.sleep(window)
        if other() / window < threshold:
            break
    return time.perf_counter() - t0


def time_config(cfg: Config, impls: list[str], peers: dict[str, Any], idle_wait: float = 0.0) -> dict[str, Any]:
    """Median of ``cfg.repeats`` runs of every callable, alternating between them in each round.

    With ``idle_wait`` > 0, each round first waits (at most that long) for the other
    processes of the machine to go quiet.  The CPU time other processes used during
    the timed calls is recorded either way.
    """
    fns = callables(cfg, impls, peers)
    first: dict[str, Any] = {}
    for name, fn in fns.items():  # warm-up (and the outputs for the agreement check)
        first[name] = fn()
    agree = agreement(first, cfg)
    # no silent upcast: every relevance map of the explanation is in the model's dtype
    dtypes = sorted({str(r.dtype) for name, e in first.items() if name.startswith("lrp_ref")
                     and not name.endswith("forward") for r in e.layers})
    del first
    times: dict[str, list[float]] = {name: [] for name in fns}
    foreign_s, waited_s = 0.0, 0.0
    for _ in range(cfg.repeats):
        if idle_wait:
            waited_s += wait_idle(idle_wait)
        for name, fn in fns.items():
            gc.collect()
            others = cpu_seconds_elsewhere()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            foreign_s += others()
    return {
        "median_s": {name: statistics.median(ts) for name, ts in times.items()},
        "min_s": {name: min(ts) for name, ts in times.items()},  # the reported time: least disturbed by other load
        "all_s": times,
        "timed_s": sum(map(sum, times.values())),
        "foreign_cpu_s": foreign_s,
        "waited_for_idle_s": waited_s,
        "agreement": agree,
        "lrp_ref_relevance_dtypes": dtypes,
    }


# ----------------------------------------------------------------------------- peak memory (fresh process)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement once in this (fresh) process and report its memory.

    ``rss_peak_delta_mb``: the process's peak resident set during the call minus
    the resident set just before it (model, input and libraries already loaded).
    The peak is reset before the call (``/proc/self/clear_refs``) where the
    kernel allows, so it is the call's own high-water mark.  For lrp_ref also
    ``numpy_peak_mb``: the peak of NumPy's allocations during a second call,
    traced by tracemalloc (exact bytes, not pages).
    """
    cfg = Config(spec["model"], spec["batch"], spec["dtype"], 1)
    impl = spec["impl"]
    peers = import_peers() if not impl.startswith("lrp_ref") else {}
    fns = callables(cfg, [impl.split(":")[0]], peers)
    fn = fns[impl]
    gc.collect()
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        reset = False
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    result = {"rss_before_mb": before / 1024, "rss_peak_mb": peak / 1024,
              "rss_peak_delta_mb": (peak - before) / 1024, "peak_reset": reset}
    if impl.startswith("lrp_ref"):
        gc.collect()
        tracemalloc.start()
        fn()
        result["numpy_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return result


#: glibc's malloc keeps freed memory of blocks below a threshold that grows at run time
#: (up to 32 MiB), so a later allocation can reuse pages without raising the resident
#: set, and what a call needs would be under-counted.  A fixed threshold of 64 KiB
#: sends every larger block (NumPy arrays, torch tensors) to mmap, returned on free.
PROBE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


def memory_config(cfg: Config, impls: list[str]) -> dict[str, Any]:
    names = ["lrp_ref:forward"] if "lrp_ref" in impls else []
    for impl in ("lrp_ref", "zennit", "captum"):
        if impl in impls:
            names += [f"{impl}:{c}" for c in COMPOSITES]
    if "torch" in impls:
        names += ["torch:forward", "torch:forward+grad"]
    out = {}
    for name in names:
        spec = {"model": cfg.model, "batch": cfg.batch, "dtype": cfg.dtype, "impl": name}
        proc = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)],
                              capture_output=True, text=True, env=PROBE_ENV)
        if proc.returncode != 0:
            out[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        else:
            out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"    memory {name:<34} {out[name]}", flush=True)
    return out


# ----------------------------------------------------------------------------- per-change breakdown (issue 13)

#: What each change of issue 13 saved: lrp_ref/ of each revision, timed in its own worker process.
#: (label, git revision or "HEAD" for this checkout's tree, LRP_REF_THREADS, extra environment).
#: Every change is bit-identical, so every step must give the same relevance bits (checked).
STEPS: list[tuple[str, str, str | None, dict[str, str]]] = [
    ("round one (before issue 13)", "757bfb11", None, {}),
    ("+ the measured savings: in-place propagate, stabiliser in the run's dtype, sign-split fast path for a >= 0, "
     "rules' weights without copies, ledger sums once per boundary, flat denominator from one sample and adjoint "
     "as a channel sum, ZBox bounds check from min/max", "4ed627f5", "1", {}),
    ("+ im2col as one copy of a strided window view", "36bcb8e0", "1", {}),
    ("+ max pooling's winners found from the forward's z (this checkout, pool off)", "HEAD", "1", {}),
    ("+ the thread pool (LRP_REF_THREADS unset: one thread per core)", "HEAD", None, {}),
    ("(the same, OpenBLAS held to 1 thread: does the pool want BLAS's cores?)", "HEAD", None,
     {"OPENBLAS_NUM_THREADS": "1"}),
]


def _tree(rev: str, into: Path) -> Path:
    """A directory whose lrp_ref/ is that of ``rev`` (this checkout's own for "HEAD", with uncommitted edits)."""
    if rev == "HEAD":
        return ROOT
    target = into / rev
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "lrp_ref"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def worker(spec: dict[str, Any]) -> int:
    """Breakdown worker: build the configuration, warm up, print each composite's digest, then time on request.

    Reads composite names from stdin, one per line; answers each with the seconds one call took.
    """
    model, x = build(spec["model"], spec["batch"], spec["dtype"])
    comps = {name: lrp_composite(name, spec["model"]) for name in COMPOSITES}
    digests = {}
    for name, comp in comps.items():
        e = lrp_ref.explain(model, x, comp)
        h = hashlib.sha256()
        # the bits of every value (+ 0.0 maps -0.0 to +0.0: round one's sum() started from the integer 0, so its
        # zeros are all +0.0, where the in-place steps keep the -0.0 of a negative times zero; equal values)
        for r in (*e.layers, *(entry.absorbed for entry in e.ledger.entries)):
            h.update(np.ascontiguousarray(r + 0.0).tobytes())
        digests[name] = h.hexdigest()[:16]
    print(json.dumps({"digests": digests, "lrp_ref": lrp_ref.__file__}), flush=True)
    for line in sys.stdin:
        comp = comps[line.strip()]
        gc.collect()
        t0 = time.perf_counter()
        lrp_ref.explain(model, x, comp)
        print(time.perf_counter() - t0, flush=True)
    return 0


def breakdown(cfgs: list[Config], repeats: int) -> dict[str, Any]:
    """Time every step of :data:`STEPS`: one worker process per step, rounds interleaved, min and median of repeats."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return {"error": "the breakdown needs git and a git checkout (it times older revisions of lrp_ref/)"}
    out: dict[str, Any] = {"steps": [label for label, *_ in STEPS], "configs": {}}
    with tempfile.TemporaryDirectory(prefix="lrp_ref_bench_") as tmp:
        trees = [_tree(rev, Path(tmp)) for _, rev, _, _ in STEPS]
        for cfg in cfgs:
            procs = []
            for (_, _, threads, extra), tree in zip(STEPS, trees):
                env = {k: v for k, v in os.environ.items() if k != "LRP_REF_THREADS"}
                env.update(extra)
                if threads is not None:
                    env["LRP_REF_THREADS"] = threads
                spec = {"tree": str(tree), "model": cfg.model, "batch": cfg.batch, "dtype": cfg.dtype}
                procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            heads = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
            times: list[dict[str, list[float]]] = [{c: [] for c in COMPOSITES} for _ in procs]
            load = [os.getloadavg()[0]]
            for r in range(repeats):
                order = list(range(len(procs)))
                order = order[r % len(order):] + order[:r % len(order)]  # rotate: no step always runs first
                for c in COMPOSITES:
                    for k in order:
                        procs[k].stdin.write(c + "\n")  # type: ignore[union-attr]
                        procs[k].stdin.flush()  # type: ignore[union-attr]
                        times[k][c].append(float(procs[k].stdout.readline()))  # type: ignore[union-attr]
            for p in procs:
                p.stdin.close()  # type: ignore[union-attr]
                p.wait()
            same = {c: len({h["digests"][c] for h in heads}) == 1 for c in COMPOSITES}
            out["configs"][cfg.key] = {
                "min_s": [{c: min(ts[c]) for c in COMPOSITES} for ts in times],
                "median_s": [{c: statistics.median(ts[c]) for c in COMPOSITES} for ts in times],
                "all_s": times, "digests": [h["digests"] for h in heads], "bit_identical": same,
                "load_average_1min": [*load, os.getloadavg()[0]],  # before and after: how shared the machine was
            }
            print(f"{cfg.key}: breakdown " + json.dumps({c: [round(m[c], 4) for m in out["configs"][cfg.key]["min_s"]]
                                                         for c in COMPOSITES}) + f" bit-identical {same}", flush=True)
    return out


def breakdown_markdown(bd: dict[str, Any]) -> list[str]:
    if "error" in bd:
        return ["## What each change saved", "", bd["error"]]
    lines = ["## What each change saved (min of the repeats; each step in its own process, rounds interleaved)", "",
             "Each step adds one change to the one above; the saving is against the step above and, in the last "
             "column, against round one.  Relevance bits: the sha256 of every relevance map and absorbed share, "
             "compared across all steps.", ""]
    for key, res in bd["configs"].items():
        for c in COMPOSITES:
            lines += [f"**{key}, {c}** (relevance bits identical in every step: "
                      f"{'yes' if res['bit_identical'][c] else '**no**'}; load average of the machine "
                      f"{res['load_average_1min'][0]:.1f} before, {res['load_average_1min'][1]:.1f} after)", "",
                      "| step | min (s) | median (s) | saved vs step above | time / round one |",
                      "|---|---|---|---|---|"]
            first = res["min_s"][0][c]
            for k, label in enumerate(bd["steps"]):
                t_min, t_med = res["min_s"][k][c], res["median_s"][k][c]
                saved = "" if k == 0 else f"{100 * (1 - t_min / res['min_s'][k - 1][c]):.0f}%"
                lines.append(f"| {label} | {t_min:.4f} | {t_med:.4f} | {saved} | {t_min / first:.2f} |")
            lines.append("")
    return lines


# ----------------------------------------------------------------------------- environment


def cpu_seconds_elsewhere() -> Callable[[], float]:
    """A stopwatch of the CPU time that other processes used (from /proc/stat, minus this process and its children)."""
    def snapshot() -> tuple[float, float]:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:9]]
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
        own = sum(os.times()[:4])
        return busy, own

    b0, o0 = snapshot()

    def elapsed() -> float:
        b1, o1 = snapshot()
        return max(0.0, (b1 - b0) - (o1 - o0))

    return elapsed


def environment(peers: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "lrp_ref": lrp_ref.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "block_bytes": lrp_ref._windows.BLOCK_BYTES,
        "lrp_ref_threads": importlib.import_module("lrp_ref._threads").n_threads(),
        "LRP_REF_THREADS": os.environ.get("LRP_REF_THREADS"),
    }
    try:
        from threadpoolctl import threadpool_info

        env["threadpools"] = [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
            for info in threadpool_info()
        ]
    except ImportError:
        env["threadpools"] = "threadpoolctl not installed: BLAS kernel unknown"
    for name in ("torch", "zennit", "captum"):
        if name in peers:
            from importlib.metadata import version

            env[name] = version(name)
    if "torch" in peers:
        env["torch_threads"] = peers["torch"].get_num_threads()
    return env


# ----------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 13 on lrp_ref's core (float32 unless said), evaluated on this run."""
    def t(key: str, name: str) -> float | None:
        return results.get(key, {}).get("timing", {}).get("min_s", {}).get(name)

    def mem(key: str, name: str) -> float | None:
        return results.get(key, {}).get("memory", {}).get(name, {}).get("rss_peak_delta_mb")

    rows = []

    def add(what: str, value: float | None, limit: float) -> None:
        rows.append({"target": what, "ratio": value, "limit": limit,
                     "met": None if value is None else bool(value <= limit)})

    v1, v64, m256 = "vgg16/b1/float32", "vgg16/b1/float64", "mnist_cnn/b256/float32"
    box_limit = {"epsilon_plus_flat": 0.5, "epsilon_gamma_box": 0.3}
    for c in COMPOSITES:
        add(f"VGG-16 b1: {c} time / zennit's", ratio(t(v1, f"lrp_ref:{c}"), t(v1, f"zennit:{c}")), box_limit[c])
    for c in COMPOSITES:  # for information: the same computation as zennit's (profile "zennit")
        add(f"(same conventions) VGG-16 b1: {c} profile=zennit / zennit",
            ratio(t(v1, f"lrp_ref[zennit]:{c}"), t(v1, f"zennit:{c}")), box_limit[c])
    add("VGG-16 b1: epsilon_plus_flat time / Captum's LRP (z+ / epsilon, no flat rule)",
        ratio(t(v1, "lrp_ref:epsilon_plus_flat"), t(v1, "captum:epsilon_plus_flat")), 1.2)
    for c in COMPOSITES:
        add(f"MNIST CNN b256: {c} time / zennit's", ratio(t(m256, f"lrp_ref:{c}"), t(m256, f"zennit:{c}")), 0.7)
    for c in COMPOSITES:
        add(f"VGG-16 b1: {c} explain / lrp_ref forward", ratio(t(v1, f"lrp_ref:{c}"), t(v1, "lrp_ref:forward")), 3.0)
    for c in COMPOSITES:
        add(f"VGG-16 b1: {c} float64 / zennit float32", ratio(t(v64, f"lrp_ref:{c}"), t(v1, f"zennit:{c}")), 1.0)
    for c in COMPOSITES:
        add(f"VGG-16 b1: {c} peak memory / zennit's", ratio(mem(v1, f"lrp_ref:{c}"), mem(v1, f"zennit:{c}")), 1.0)
    return rows


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    env, results = report["environment"], report["results"]
    lines = ["# lrp_ref benchmark", ""]
    lines.append(f"Run {report['started']} ({report['mode']} mode), {report['wall_s']:.0f} s.  ")
    lines.append(f"numpy {env['numpy']}, lrp_ref {env['lrp_ref']}, "
                 + ", ".join(f"{n} {env[n]}" for n in ("torch", "zennit", "captum") if n in env)
                 + f"; {env['cpus']} CPUs.  ")
    lines.append(f"BLAS: {env['threadpools']}; OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}.  ")
    lines.append(f"CPU time used by other processes during the {report['timed_s']:.0f} s of timed calls: "
                 f"{report['foreign_cpu_s']:.1f} s (0: the machine was otherwise idle; per configuration in the JSON).")
    lines += ["", "## Targets (issue 13, lrp_ref's core; ratios from this run)", "",
              "| target | ratio | limit | |", "|---|---|---|---|"]
    for row in report["targets"]:
        verdict = "n/a" if row["met"] is None else ("met" if row["met"] else "**not met**")
        lines.append(f"| {row['target']} | {fmt(row['ratio'], '.2f')} | {row['limit']} | {verdict} |")
    lines += ["", "## Times (seconds per call, the minimum over the rounds; medians in results.json)", "",
              "lrp_ref: its own conventions (the targets); lrp_ref [zennit]: `profile=\"zennit\"`, the same "
              "computation as zennit's (e.g. zennit's gamma is the generalised, two-branch form); "
              "agreement: max |R_lrp_ref[zennit] - R_zennit| / max |R| and the correlation with lrp_ref's default.", ""]
    lines.append("| model / batch / dtype | lrp_ref forward | torch forward | torch fwd+grad | composite | lrp_ref "
                 "| lrp_ref [zennit] | zennit | captum | lrp_ref / zennit | lrp_ref [zennit] / zennit "
                 "| lrp_ref / own forward | agreement | relevance dtype |")
    lines.append("|---" * 14 + "|")
    for key, res in results.items():
        med = res.get("timing", {}).get("min_s", {})
        for c in COMPOSITES:
            ours, same, zen = med.get(f"lrp_ref:{c}"), med.get(f"lrp_ref[zennit]:{c}"), med.get(f"zennit:{c}")
            agree = res.get("timing", {}).get("agreement", {}).get(c, {})
            agree_txt = (f"{fmt(agree.get('max_diff_zennit_profile'), '.1e')} / "
                         f"{fmt(agree.get('correlation_default'), '.5f')}") if agree else "n/a"
            lines.append(
                f"| {key} | {fmt(med.get('lrp_ref:forward'))} | {fmt(med.get('torch:forward'))} | "
                f"{fmt(med.get('torch:forward+grad'))} | {c} | {fmt(ours)} | {fmt(same)} | {fmt(zen)} | "
                f"{fmt(med.get(f'captum:{c}'))} | {fmt(ratio(ours, zen), '.2f')} | {fmt(ratio(same, zen), '.2f')} | "
                f"{fmt(ratio(ours, med.get('lrp_ref:forward')), '.2f')} | {agree_txt} | "
                f"{', '.join(res.get('timing', {}).get('lrp_ref_relevance_dtypes', [])) or 'n/a'} |"
            )
    thread_rows = [(key, c, res["timing"]["min_s"]) for key, res in results.items() for c in COMPOSITES
                   if f"lrp_ref[1 thread]:{c}" in res.get("timing", {}).get("min_s", {})]
    if thread_rows:
        lines += ["", f"## Threads on and off (lrp_ref's pool: {env.get('lrp_ref_threads')} threads; "
                  "BLAS threads as reported above in both)", "",
                  "| model / batch / dtype | composite | 1 thread (s) | pool (s) | pool / 1 thread |",
                  "|---|---|---|---|---|"]
        for key, c, med in thread_rows:
            one, pool = med[f"lrp_ref[1 thread]:{c}"], med.get(f"lrp_ref:{c}")
            lines.append(f"| {key} | {c} | {fmt(one)} | {fmt(pool)} | {fmt(ratio(pool, one), '.2f')} |")
    if report.get("breakdown"):
        lines += ["", *breakdown_markdown(report["breakdown"])]
    mem_rows = [(k, r["memory"]) for k, r in results.items() if r.get("memory")]
    if mem_rows:
        lines += ["", "## Peak memory (MiB above the resident set before the call; fresh process each)", ""]
        lines.append("| model / batch / dtype | measurement | peak RSS increase | NumPy peak (tracemalloc) |")
        lines.append("|---|---|---|---|")
        for key, mem in mem_rows:
            for name, m in mem.items():
                if "error" in m:
                    lines.append(f"| {key} | {name} | error: {m['error']} | |")
                else:
                    lines.append(f"| {key} | {name} | {m['rss_peak_delta_mb']:.0f} | "
                                 f"{fmt(m.get('numpy_peak_mb'), '.0f')} |")
    lines += ["", "Ratios below 1 mean lrp_ref is faster or smaller.  zennit and Captum run the same weights in "
              "PyTorch (CPU) in the same process, alternating with lrp_ref in every round.  Captum has no flat "
              "or zB rule: its first layer takes the conv rule (z+ or gamma), so its numbers are indicative.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- driver


def configs(args: argparse.Namespace) -> list[Config]:
    if args.quick:
        quick = args.repeats or 2
        return [Config("vgg16", 1, "float32", quick), Config("mnist_cnn", 256, "float32", quick),
                Config("vgg16", 1, "float64", quick)]  # float64: the target "no slower than zennit in float32"
    out = []
    for dtype in ("float32", "float64"):
        out.append(Config("vgg16", 1, dtype, args.repeats or 5))
        out.append(Config("vgg16", 8, dtype, args.repeats or 3))
        out.append(Config("mnist_cnn", 1, dtype, args.repeats or 7))
        out.append(Config("mnist_cnn", 256, dtype, args.repeats or 5))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="only what the targets need: VGG-16 b1 (float32, float64) and MNIST b256 float32")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per configuration (median)")
    parser.add_argument("--only", choices=["vgg16", "mnist_cnn"], help="one model only")
    parser.add_argument("--impls", default="lrp_ref,threads,zennit,captum,torch",
                        help="comma-separated subset of lrp_ref,threads,zennit,captum,torch "
                             "(threads: lrp_ref once more with its thread pool off)")
    parser.add_argument("--memory", choices=["none", "key", "all"], default="key",
                        help="peak-memory probes: none, key (float32 and VGG-16 batch 1 float64; default), all")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each round, wait up to SECONDS for other processes to go quiet (shared machines)")
    parser.add_argument("--out", type=Path, default=BENCH, help="where results.json and results.md go")
    parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                        help="time each change of issue 13 (older revisions of lrp_ref/ via git; VGG-16 b1 and "
                             "MNIST b256, float32); default on")
    parser.add_argument("--breakdown-repeats", type=int, default=5, metavar="N", help="repeats per breakdown step")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    if args.worker:
        return worker(json.loads(args.worker))

    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    peers = import_peers() if set(impls) - {"lrp_ref", "threads"} else {}
    if "torch" not in peers:
        print(f"PyTorch peers skipped: {peers.get('error', 'not requested')}", flush=True)
        impls = [i for i in impls if i in ("lrp_ref", "threads")]
    for name in ("zennit", "captum"):
        if name in impls and name not in peers:
            print(f"{name} skipped: {peers.get(name + '_error')}", flush=True)
            impls.remove(name)

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    todo = [c for c in configs(args) if args.only in (None, c.model)]
    for cfg in todo:
        print(f"{cfg.key}: {cfg.repeats} repeats", flush=True)
        timing = time_config(cfg, impls, peers, args.wait_idle)
        for name, med in timing["min_s"].items():
            print(f"    {name:<34} {med:8.4f} s", flush=True)
        results[cfg.key] = {"config": cfg.__dict__, "timing": timing}
        gc.collect()
    for cfg in todo:
        wanted = args.memory == "all" or (
            args.memory == "key" and (cfg.dtype == "float32" or (cfg.model == "vgg16" and cfg.batch == 1))
        )
        if wanted:
            print(f"{cfg.key}: peak memory (fresh process per measurement)", flush=True)
            results[cfg.key]["memory"] = memory_config(cfg, impls)

    report = {
        "started": started,
        "mode": "quick" if args.quick else "full",
        "wall_s": time.perf_counter() - t_start,
        "foreign_cpu_s": sum(r["timing"]["foreign_cpu_s"] for r in results.values()),
        "timed_s": sum(r["timing"]["timed_s"] for r in results.values()),
        "environment": environment(peers),
        "results": results,
    }
    if args.breakdown:
        wanted = [Config(m, b, "float32", args.breakdown_repeats) for m, b in (("vgg16", 1), ("mnist_cnn", 256))]
        report["breakdown"] = breakdown([c for c in wanted if args.only in (None, c.model)], args.breakdown_repeats)
        report["wall_s"] = time.perf_counter() - t_start
    report["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    (args.out / "results.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
