#!/usr/bin/env python3
"""Run lrp_toolbox on random networks, compare it with lrp_ref's "toolbox" profile, record its numbers.

    scripts/record_toolbox.py TOOLBOX_DIR                # measure, then (re)write tests/golden/toolbox/*.h5
    scripts/record_toolbox.py TOOLBOX_DIR --check        # measure, compare with what is recorded, write nothing
    scripts/record_toolbox.py TOOLBOX_DIR --no-record    # measure only (a table per network)

TOOLBOX_DIR is a git repository of sebastian-lapuschkin/lrp_toolbox (a checkout or a bare
mirror): its ``python/modules`` at HEAD is extracted to a temporary directory with
``git archive`` and imported from there, unmodified; the commit is ``git rev-parse HEAD``.
A plain directory holding ``python/modules`` (or ``modules``) is also accepted, with
``--commit``.  None of the toolbox's code is copied into this repository (its licence notes
forbid it): only its numbers are recorded.

The toolbox uses ``np.float``, removed in NumPy 1.24; this script sets ``numpy.float = float``
before importing it (the only concession; nothing of the toolbox is patched).

For every network (MLPs, CNNs with stride 1 and 2 convolutions, sum and max pooling with
stride == kernel and overlapping windows, inputs with exact ties in max-pool windows), every
input range ([0, 1] and [-1, 1]) and every rule of the toolbox ('simple', 'epsilon',
'alphabeta', 'flat', 'ww'), the script

1. builds the network in both libraries with identical weights (toolbox: NHWC, filters
   (h, w, in, out), Linear weight (in, out), ``SumPool`` = window sum / sqrt(k); lrp_ref: NCHW,
   PyTorch layout, ``SumPool`` = ``AvgPool2d`` with window weights 1/sqrt(k)), float64;
2. runs the toolbox's own ``forward`` and ``lrp(Rinit, lrp_var, param)`` from its demos' start
   relevance (``Rinit = ypred * mask``, the arg-max logit times one-hot), along three code
   paths: ``fast`` (``nn.forward(x)``, ``nn.lrp(...)``), ``aware`` (``nn.forward(x,
   lrp_aware=True)``, which precomputes the local contributions) and ``slow`` (each module's
   ``*_slow`` variant, ``lrp_var + '_slow'``, where the module has one, its ordinary method
   where not: max pooling has no slow epsilon or alpha-beta);
3. computes ``lrp_ref.explain(model, x, rule, target=argmax, profile="toolbox")`` with
   rule = LRP0(), Epsilon(eps), AlphaBeta(alpha, alpha - 1), Flat(), WSquare();
4. reports max|diff| / max|R| per case, and checks it against 1e-10, except for the known
   toolbox bugs (see :func:`known_bug`), which lrp_ref does not reproduce:
   ``SumPool._alphabeta_lrp`` with alpha * beta != 0 on a sum pool with negative inputs
   (there lrp_ref agrees with the toolbox's slow path), and the slow alpha-beta of Linear
   and Convolution, which has no stabiliser (there lrp_ref agrees with the fast path);
5. writes one HDF5 file per network and input range into tests/golden/toolbox/ (see
   tests/test_toolbox_golden.py for the layout), which `make test` checks without the toolbox.

Exit status 1 if any case is out of tolerance or, with --check, differs from what is recorded.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import lrp_ref
from lrp_ref import catalog, io
from lrp_ref import layers as L
from lrp_ref.recipe import sign_terms
from lrp_ref.testing import relevance_error

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "toolbox"
RTOL = 1e-10
FORMAT = "lrp_ref-toolbox-peer"
_STR = h5py.string_dtype("utf-8")

# ----------------------------------------------------------------------------- loading the toolbox


def load_toolbox(directory: Path, commit: str | None, workdir: Path) -> tuple[types.ModuleType, str]:
    """The toolbox's ``modules`` package (imported under a private name) and its commit."""
    is_git = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True)
    if is_git.returncode == 0:
        head = is_git.stdout.strip()
        if commit is not None and commit != head:
            sys.exit(f"--commit {commit} given, but {directory} is at {head}")
        archive = subprocess.run(["git", "-C", str(directory), "archive", head, "python/modules"],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive.stdout, check=True)
        package, commit = workdir / "python" / "modules", head
    else:
        package = next((p for p in (directory / "python" / "modules", directory / "modules") if p.is_dir()), None)
        if package is None:
            sys.exit(f"{directory}: neither a git repository of lrp_toolbox nor a directory with python/modules")
        if commit is None:
            sys.exit(f"{directory} is not a git repository: give the toolbox's commit with --commit")
    if not hasattr(np, "float"):
        setattr(np, "float", float)  # the toolbox's np.float (removed in NumPy 1.24)  # noqa: B010
    spec = importlib.util.spec_from_file_location("lrp_toolbox_modules", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module, commit


# ----------------------------------------------------------------------------- networks in both libraries


@dataclass(frozen=True)
class Net:
    """A network as a list of layer specs, toolbox layout (NHWC, filters (h, w, in, out), Linear (in, out))."""

    name: str
    description: str
    layers: list[tuple[Any, ...]]
    input_shape: tuple[int, ...]  # toolbox layout: (D,) or (H, W, C)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # range name -> (N, *input_shape)

    def toolbox(self, tb: types.ModuleType) -> Any:
        modules = []
        for spec in self.layers:
            kind = spec[0]
            if kind == "linear":
                m = tb.Linear(*spec[1].shape)
                m.W, m.B = spec[1].copy(), spec[2].copy()
            elif kind == "conv":
                m = tb.Convolution(spec[1].shape, stride=(spec[3], spec[3]))
                m.W, m.B = spec[1].copy(), spec[2].copy()
            elif kind in ("sumpool", "maxpool"):
                cls = tb.SumPool if kind == "sumpool" else tb.MaxPool
                m = cls(pool=(spec[1], spec[1]), stride=(spec[2], spec[2]))
            elif kind == "rect":
                m = tb.Rect()
            elif kind == "flatten":
                m = tb.Flatten()
            else:
                raise ValueError(kind)
            modules.append(m)
        return tb.Sequential(modules)

    def lrp_ref(self) -> lrp_ref.Sequential:
        layers: list[L.Layer] = []
        shape: tuple[int, ...] = self.input_shape  # toolbox layout of the current activation
        for spec in self.layers:
            kind = spec[0]
            if kind == "linear":
                w = spec[1]
                if len(shape) == 3:  # after a Flatten of an NHWC map: reorder the rows to lrp_ref's NCHW flattening
                    h, wd, c = shape
                    w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
                layers.append(L.Dense(w.T.copy(), spec[2].copy()))
                shape = (w.shape[1],)
            elif kind == "conv":
                f, stride = spec[1], spec[3]
                layers.append(L.Conv2d(f.transpose(3, 2, 0, 1).copy(), spec[2].copy(), stride=stride))
                shape = ((shape[0] - f.shape[0]) // stride + 1, (shape[1] - f.shape[1]) // stride + 1, f.shape[3])
            elif kind in ("sumpool", "maxpool"):
                k, s = spec[1], spec[2]
                if kind == "sumpool":  # lrp_toolbox's SumPool: window sum / sqrt(k)
                    layers.append(L.AvgPool2d(k, s, window_weight=np.full((k, k), 1 / np.sqrt(k * k))))
                else:
                    layers.append(L.MaxPool2d(k, s))
                shape = ((shape[0] - k) // s + 1, (shape[1] - k) // s + 1, shape[2])
            elif kind == "rect":
                layers.append(L.ReLU())
            elif kind == "flatten":
                layers.append(L.Flatten())
                # keep the NHWC shape: the next Linear reorders its rows with it
        return lrp_ref.Sequential(layers)


def to_nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def networks() -> list[Net]:
    """The networks the toolbox is run on (fixed seeds)."""
    rng = np.random.default_rng(20260214)

    def linear(n_in: int, n_out: int) -> tuple[Any, ...]:
        return ("linear", rng.normal(scale=(2 / n_in) ** 0.5, size=(n_in, n_out)), rng.normal(scale=0.1, size=n_out))

    def conv(k: int, c_in: int, c_out: int, stride: int = 1) -> tuple[Any, ...]:
        return ("conv", rng.normal(scale=(2 / (k * k * c_in)) ** 0.5, size=(k, k, c_in, c_out)),
                rng.normal(scale=0.1, size=c_out), stride)

    def ranges(shape: tuple[int, ...], n: int = 2) -> dict[str, np.ndarray]:
        return {"unit": rng.uniform(0.0, 1.0, size=(n, *shape)), "signed": rng.uniform(-1.0, 1.0, size=(n, *shape))}

    def tied(shape: tuple[int, ...], n: int = 2) -> dict[str, np.ndarray]:
        """Quantised inputs with constant 2x2 patches: exact ties in max-pool windows, on the input and after a conv."""
        h, w, c = shape
        out = {}
        for name, low in (("unit", 0.0), ("signed", -1.0)):
            coarse = rng.integers(0, 5, size=(n, (h + 1) // 2, (w + 1) // 2, c)) / 4.0
            x = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)[:, :h, :w, :]
            x[:, : 3 * h // 5, :, :] = x[:, :1, :1, :]  # a constant band across the top
            out[name] = low + (1.0 - low) * x
        return out

    nets = [
        Net("mlp", "Linear 8-12-10-3 with biases and Rect", [linear(8, 12), ("rect",), linear(12, 10), ("rect",),
                                                            linear(10, 3)], (8,)),
        Net("cnn", "Conv 3x3 stride 1, Conv 3x3 stride 2, Linear, Linear", [
            conv(3, 2, 4), ("rect",), conv(3, 4, 5, stride=2), ("rect",), ("flatten",),
            linear(20, 10), ("rect",), linear(10, 3)], (8, 8, 2)),
        Net("sumpool", "Conv, SumPool 3x3 stride 2 (overlapping), Conv, SumPool 2x2 stride 1 (overlapping), Linear", [
            conv(3, 2, 4), ("rect",), ("sumpool", 3, 2), conv(2, 4, 4), ("rect",), ("sumpool", 2, 1),
            ("flatten",), linear(16, 3)], (11, 11, 2)),
        Net("sumpool_signed", "SumPool 2x2 stride 2 on the input, Conv, SumPool 2x2 stride 1 before the Rect, "
            "Linear: sum pooling of signed values", [
                ("sumpool", 2, 2), conv(3, 2, 4), ("sumpool", 2, 1), ("rect",), ("flatten",), linear(16, 3)],
            (10, 10, 2)),
        Net("maxpool", "Conv, MaxPool 2x2 stride 2, Conv 2x2 stride 2, Rect, Linear", [
            conv(3, 2, 4), ("rect",), ("maxpool", 2, 2), conv(2, 4, 5, stride=2), ("rect",), ("flatten",),
            linear(20, 3)], (10, 10, 2)),
        Net("maxpool_overlap", "Conv, MaxPool 3x3 stride 2, Conv, MaxPool 2x2 stride 1, Linear", [
            conv(3, 2, 4), ("rect",), ("maxpool", 3, 2), conv(2, 4, 5), ("rect",), ("maxpool", 2, 1),
            ("flatten",), linear(20, 3)], (11, 11, 2)),
        Net("maxpool_ties", "MaxPool 2x2 on quantised inputs with constant 2x2 patches and a constant band, Conv, "
            "MaxPool 2x2 stride 1 (ties from the constant band), Linear", [
                ("maxpool", 2, 2), conv(2, 2, 3), ("rect",), ("maxpool", 2, 1), ("flatten",), linear(27, 3)],
            (10, 10, 2)),
    ]
    for net in nets:
        net.inputs.update(tied(net.input_shape) if net.name == "maxpool_ties" else ranges(net.input_shape))
    # every denominator near 1e-13: the stabilisers (1e-16, sum pooling's 1e-12) decide the numbers
    scale = 1e-13
    tiny = Net("tiny", "the sumpool network with inputs and biases times 1e-13: the stabilisers matter",
               [(*spec[:2], spec[2] * scale, *spec[3:]) if spec[0] in ("linear", "conv") else spec
                for spec in nets[2].layers], nets[2].input_shape)
    tiny.inputs.update({name: x * scale for name, x in nets[2].inputs.items()})
    return [*nets, tiny]


# ----------------------------------------------------------------------------- the rules

#: (name, toolbox lrp_var, toolbox param, lrp_ref rule spec)
RULES: list[tuple[str, str | None, float | None, str]] = [
    ("simple", None, None, "lrp0"),
    ("epsilon-0.01", "epsilon", 0.01, "epsilon:epsilon=0.01"),
    ("epsilon-0.1", "epsilon", 0.1, "epsilon:epsilon=0.1"),
    ("epsilon-1", "epsilon", 1.0, "epsilon:epsilon=1"),
    ("alphabeta-1", "alphabeta", 1.0, "alpha_beta:alpha=1,beta=0"),
    ("alphabeta-2", "alphabeta", 2.0, "alpha_beta:alpha=2,beta=1"),
    ("alphabeta-3", "alphabeta", 3.0, "alpha_beta:alpha=3,beta=2"),
    ("flat", "flat", None, "flat"),
    ("ww", "ww", None, "wsquare"),
]
PATHS = ("fast", "aware", "slow")
#: the paths whose results are recorded ("aware" is measured and reported, not recorded: the files stay small)
RECORDED = ("fast", "slow")


def _slow_name(lrp_var: str | None) -> str | None:
    return {None: "simple_slow", "epsilon": "epsilon_slow", "alphabeta": "alphabeta_slow"}.get(lrp_var)


def run_toolbox(tb: types.ModuleType, net: Net, x: np.ndarray, lrp_var: str | None, param: float | None,
                path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The toolbox's output, target, input relevance and the exact call, along ``path``."""
    nn = net.toolbox(tb)
    ypred = nn.forward(x.copy(), lrp_aware=(path == "aware"))
    mask = np.zeros_like(ypred)
    target = np.argmax(ypred, axis=1)
    mask[np.arange(len(x)), target] = 1
    Rinit = ypred * mask
    forward = "nn.forward(x, lrp_aware=True)" if path == "aware" else "nn.forward(x)"
    args = "" if lrp_var is None else f", {lrp_var!r}" + ("" if param is None else f", {param!r}")
    if path != "slow":
        R = nn.lrp(Rinit.copy(), lrp_var, param)
        call = f"ypred = {forward}; Rinit = ypred * onehot(argmax(ypred)); R = nn.lrp(Rinit{args})"
    else:
        slow = _slow_name(lrp_var)
        R = Rinit.copy()
        fallback = []
        for m in nn.modules[::-1]:
            try:
                R = m.lrp(R, slow, param)
            except NotImplementedError:
                R = m.lrp(R, lrp_var, param)
                fallback.append(type(m).__name__)
        note = f" (no slow variant in {', '.join(sorted(set(fallback)))}: m.lrp(R{args}) there)" if fallback else ""
        call = (f"ypred = {forward}; Rinit = ypred * onehot(argmax(ypred)); R = Rinit; "
                f"for m in nn.modules[::-1]: R = m.lrp(R, {slow!r}{'' if param is None else f', {param!r}'})"
                + note)
    return np.asarray(ypred), target, np.asarray(R), call


def has_slow(lrp_var: str | None) -> bool:
    return _slow_name(lrp_var) is not None


#: the toolbox bugs lrp_ref does not reproduce (see docs/profiles.md, "Known peer bugs")
SUMPOOL_ALPHABETA = "sumpool-alphabeta-fast"
SLOW_ALPHABETA = "alphabeta-slow-stabilisers"
#: a denominator smaller than this (and not 0) makes a stabiliser of 1e-16 show above 1e-10 of max|R|
SMALL = 1e-6


def known_bug(model: lrp_ref.Sequential, e: lrp_ref.Explanation, lrp_var: str | None, param: float | None,
              path: str) -> str:
    """The name of the toolbox bug that changes this case's result, or "" (read off lrp_ref's explanation ``e``).

    * ``sumpool-alphabeta-fast``: SumPool._alphabeta_lrp multiplies R in twice in its beta term when
      alpha * beta != 0: it changes the result where a window holds a negative input and its relevance
      is neither 0 nor 1.
    * ``alphabeta-slow-stabilisers``: the slow alpha-beta has other stabilisers than the fast one
      (which the profile follows): none in Linear and Convolution, -1e-16 instead of -2e-16 for
      SumPool's negative part.  At a zero denominator (no positive, or no negative, contribution and
      no bias of that sign) Linear gives 0/0 = NaN for every input, and Convolution sets the NaN
      entries to 0 after summing over the filters, which drops every filter's relevance at that
      output position.  At a denominator below 1e-6 the missing 1e-16 shows above 1e-10.
    """
    if lrp_var != "alphabeta" or param is None:
        return ""
    alpha, beta = param, 1 - param
    for k, layer in enumerate(model):
        a = e.activations[k]
        if isinstance(layer, L.AvgPool2d) and path != "slow" and alpha * beta != 0:
            negative_window = layer.with_weight(np.ones_like(layer.weight)).linear(np.minimum(a, 0)) < 0
            R = e.layers[k + 1]
            if np.any(negative_window & (R != 0) & (R != 1)):
                return SUMPOOL_ALPHABETA
        if isinstance(layer, (L.Dense, L.Conv2d, L.AvgPool2d)) and path == "slow":
            b = layer.bias_term()
            pos = sum(t.linear(x) for t, x in sign_terms(layer, a, True, "contributions")) + np.maximum(b, 0)
            neg = sum(t.linear(x) for t, x in sign_terms(layer, a, False, "contributions")) + np.minimum(b, 0)
            if isinstance(layer, L.AvgPool2d):  # the slow SumPool: +1e-16 as the profile, -1e-16 instead of -2e-16
                pos = np.ones_like(pos)
                neg = neg / layer.weight.flat[0]
            elif (alpha != 0 and np.any(pos == 0)) or (beta != 0 and np.any(neg == 0)):
                return SLOW_ALPHABETA
            if (alpha != 0 and np.any((pos != 0) & (np.abs(pos) < SMALL))) or \
                    (beta != 0 and np.any((neg != 0) & (np.abs(neg) < SMALL))):
                return SLOW_ALPHABETA
    return ""


@dataclass(frozen=True)
class Case:
    net: str
    data: str
    rule: str
    path: str
    rule_spec: str
    call: str
    relevance: np.ndarray
    oracle: np.ndarray
    residual: float
    known_bug: str


@dataclass(frozen=True)
class Run:
    """Every case of one network on one input batch."""

    net: Net
    data: str
    x: np.ndarray  # NCHW (lrp_ref's layout)
    target: np.ndarray
    output: np.ndarray  # the toolbox's forward output
    cases: list[Case]


def run_all(tb: types.ModuleType, nets: list[Net]) -> Iterator[Run]:
    for net in nets:
        model = net.lrp_ref()
        for data, x in net.inputs.items():
            cases: list[Case] = []
            first: tuple[np.ndarray, np.ndarray] | None = None
            for rule, lrp_var, param, spec in RULES:
                e = None
                for path in PATHS:
                    if path == "slow" and not has_slow(lrp_var):
                        continue
                    with np.errstate(divide="ignore", invalid="ignore"):  # the toolbox's 0/0 (a known bug)
                        ypred, target, R, call = run_toolbox(tb, net, x, lrp_var, param, path)
                    if first is None:
                        first = ypred, target
                    assert np.array_equal(target, first[1])
                    if e is None:
                        e = lrp_ref.explain(model, to_nchw(x), catalog.from_spec(spec), target=target,
                                            profile="toolbox")
                        out_err = relevance_error(e.output, ypred)[1]
                        if out_err > 1e-12:
                            raise SystemExit(f"{net.name}-{data}: forward passes differ ({out_err:.2e} of max|y|)")
                    R = to_nchw(R)
                    residual = relevance_error(R, e.relevance)[1] if np.all(np.isfinite(R)) else float("inf")
                    cases.append(Case(net.name, data, rule, path, spec, call, R, e.relevance, residual,
                                      known_bug(model, e, lrp_var, param, path)))
            assert first is not None
            yield Run(net, data, to_nchw(x), first[1], first[0], cases)


# ----------------------------------------------------------------------------- recording


def write_file(path: Path, run: Run, commit: str) -> None:
    """One file per network and input range; /cases/<rule>-<path> holds the toolbox's input relevance."""
    net, data, cases = run.net, run.data, run.cases
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", track_order=False, libver="latest") as f:
        for key, value in (("format", FORMAT), ("name", f"{net.name}-{data}"), ("description", net.description),
                           ("library", "lrp_toolbox"), ("commit", commit),
                           ("source", "github.com/sebastian-lapuschkin/lrp_toolbox, python/modules"),
                           ("profile", "toolbox"), ("start", "ypred * onehot(argmax(ypred)), /target")):
            f.attrs.create(key, value, dtype=_STR)
        f.attrs.create("schema_version", np.int64(1))
        io.write_model(f.create_group("model"), net.lrp_ref())
        f.create_dataset("input", data=run.x, track_times=False)
        f.create_dataset("target", data=run.target.astype(np.int64), track_times=False)
        f.create_dataset("output", data=run.output, track_times=False)
        group = f.create_group("cases")
        for c in cases:
            if c.path not in RECORDED:
                continue
            d = group.create_dataset(f"{c.rule}-{c.path}", data=c.relevance, track_times=False)
            for key, value in (("rule_spec", c.rule_spec), ("path", c.path), ("call", c.call)):
                d.attrs.create(key, value, dtype=_STR)
            d.attrs.create("known_bug", c.known_bug, dtype=_STR)


def check_file(path: Path, cases: list[Case], commit: str) -> list[str]:
    if not path.exists():
        return [f"{path.name}: missing"]
    problems = []
    with h5py.File(path, "r") as f:
        if str(f.attrs["commit"]) != commit:
            problems.append(f"{path.name}: recorded from {f.attrs['commit']}, live is {commit}")
        kept = set(f["cases"])
        for c in cases:
            key = f"{c.rule}-{c.path}"
            if c.path not in RECORDED:
                continue
            if key not in kept:
                problems.append(f"{path.name}: no /cases/{key}")
                continue
            kept.discard(key)
            stored = np.asarray(f["cases"][key])
            scale = float(np.max(np.abs(stored[np.isfinite(stored)]), initial=0.0))
            try:
                np.testing.assert_allclose(c.relevance, stored, rtol=0, atol=1e-13 * scale, equal_nan=True)
            except AssertionError:
                problems.append(f"{path.name}: /cases/{key} differs from a live run")
            if str(f["cases"][key].attrs["known_bug"]) != c.known_bug:
                problems.append(f"{path.name}: /cases/{key} known_bug is {f['cases'][key].attrs['known_bug']!r}, "
                                f"live {c.known_bug!r}")
        problems.extend(f"{path.name}: /cases/{key} recorded but not reproduced live" for key in sorted(kept))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("toolbox", type=Path, help="lrp_toolbox git repository (checkout or bare), or its directory")
    parser.add_argument("--commit", help="the toolbox commit, when TOOLBOX_DIR is not a git repository")
    parser.add_argument("--check", action="store_true", help="compare with the recorded files; write nothing")
    parser.add_argument("--no-record", action="store_true", help="measure only; write nothing")
    parser.add_argument("--out", type=Path, default=GOLDEN, help=f"where the files go (default {GOLDEN})")
    args = parser.parse_args(argv)

    problems: list[str] = []
    worst: dict[tuple[str, str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tb, commit = load_toolbox(args.toolbox.resolve(), args.commit, Path(tmp))
        print(f"lrp_toolbox {commit}; numpy {np.__version__}; "
              f"lrp_ref {lrp_ref.__version__} from {Path(lrp_ref.__file__).parent}")
        for run in run_all(tb, networks()):
            net, data, cases = run.net, run.data, run.cases
            print(f"\n{net.name}-{data}: {net.description}")
            for c in cases:
                flag = ""
                if c.known_bug == SUMPOOL_ALPHABETA:
                    slow = next(s for s in cases if s.rule == c.rule and s.path == "slow")
                    flag = f"  known toolbox bug {c.known_bug}; slow path {slow.residual:.1e}"
                elif c.known_bug:
                    fast = next(s for s in cases if s.rule == c.rule and s.path == "fast")
                    flag = f"  known toolbox bug {c.known_bug}; fast path {fast.residual:.1e}"
                elif c.residual > RTOL:
                    flag = "  OUT OF TOLERANCE"
                    problems.append(f"{net.name}-{data}: {c.rule} ({c.path}) {c.residual:.3e} of max|R|")
                print(f"  {c.rule:14s} {c.path:6s} {c.residual:9.2e}{flag}")
                if not c.known_bug:
                    key = (net.name.split("_")[0], c.rule.split("-")[0], c.path)
                    worst[key] = max(worst.get(key, 0.0), c.residual)
            path = args.out / f"{net.name}-{data}.h5"
            if args.check:
                problems.extend(check_file(path, cases, commit))
            elif not args.no_record:
                write_file(path, run, commit)

    print("\nworst max|diff| / max|R| per kind of net, rule and path (known bug excluded):")
    for key in sorted(worst):
        print(f"  {key[0]:8s} {key[1]:10s} {key[2]:6s} {worst[key]:.2e}")
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
