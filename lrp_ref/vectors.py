"""Golden conformance vectors: self-contained HDF5 files any language can check itself against.

One vector file holds a model, an input, a rule configuration, and what the
oracle computes: the output, the start relevance, the relevance at every layer
boundary and the ledger.  Peer libraries' results (zennit, Captum), recorded
where they apply, sit beside them.  ``weights/README.md`` specifies the model
group; the rest of the layout is::

    /                    attributes: format = "lrp_ref-vector", schema_version = 1,
                         name, description, rule_spec (lrp_ref.catalog syntax),
                         profile, dtype, platform (see :func:`platform_fingerprint`)
    /model               the model, in the layout of a model file's root
    /input               (N, ...)  model input
    /target              (N,) int64, the explained output per sample
    /output              (N, n_out) model output
    /relevance/000 ...   relevance of every tensor: 000 is the input, i + 1 the output of
                         layer (node) i, the last one the start relevance (target output's
                         value, others 0); a graph's model group is schema 2 (node names
                         and inputs in its layer groups)
    /rules/000 ...       one group per layer: attribute ``rule`` (class name) and one
                         attribute per parameter (numbers, strings); array
                         parameters (zB bounds) as datasets
    /ledger/r_out, r_in, absorbed   (L, N): per layer and sample, relevance
                         arriving from above, passed below, and absorbed
    /peers/<library>/relevance      (N, ...) input relevance computed by a peer library
                         (zennit, captum); attributes version, torch_version, call (the
                         exact call, one line) and profile (the lrp_ref profile whose
                         conventions reproduce it)
    /peers/<library>/oracle         (N, ...) lrp_ref's input relevance under that profile

Every array is float64 (the oracle's dtype) unless stated.  Strings are
variable-length UTF-8.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from . import catalog, io
from . import layers as L
from .errors import ModelFormatError
from .explain import Explanation, explain
from .graph import Graph, Sequential
from .merge import Add, Concat

__all__ = ["FORMAT", "SCHEMA_VERSION", "Case", "PeerRecord", "StoredVector", "platform_fingerprint", "read_vector",
           "suite", "write_suite", "write_vector"]

#: Value of a vector file's root attribute ``format``.
FORMAT = "lrp_ref-vector"
#: The vector layout this version writes (see the module docstring).
SCHEMA_VERSION = 1
_STR = h5py.string_dtype("utf-8")
Array = NDArray[Any]


def platform_fingerprint() -> str:
    """What decides the last bits of a float64 result here: NumPy, its BLAS, the CPU and OpenBLAS's kernel choice.

    Vectors regenerate bit for bit on the platform that wrote them; on another (a different
    BLAS kernel sums in another order) they agree to rounding, about 1e-15 of max|R|.
    """
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    cpu = "unknown cpu"
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
        flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
        cpu = f"{model}; {'avx512f' if 'avx512f' in flags else 'avx2' if 'avx2' in flags else 'no avx2'}"
    except OSError:
        pass
    return (f"numpy {np.__version__}; blas {blas.get('name', '?')} {blas.get('version', '?')}; {cpu}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}")


@dataclass(frozen=True)
class Case:
    """One conformance case: a model, an input and a rule configuration by name."""

    name: str
    description: str
    model: Graph
    x: Array
    rule_spec: str
    profile: str = "lrp_ref"

    def rules(self) -> Any:
        """The rule or composite named by ``rule_spec`` (zB bounds [0, 1]: the inputs are in [0, 1])."""
        return catalog.from_spec(self.rule_spec, bounds=(0.0, 1.0))

    def explain(self, profile: str | None = None) -> Explanation:
        """The oracle's explanation of this case (under ``profile`` if given, else the case's own)."""
        return explain(self.model, self.x, self.rules(), profile=profile or self.profile)


# ----------------------------------------------------------------------------- the suite


def _networks() -> dict[str, tuple[str, Graph, tuple[int, ...]]]:
    """Small random networks covering every layer type (fixed seeds: the suite is reproducible)."""
    rng = np.random.default_rng(20261126)

    def normal(*shape: int, scale: float = 1.0) -> Array:
        return rng.normal(scale=scale, size=shape)

    dense = Sequential([
        L.Dense(normal(5, 6), normal(5, scale=0.3)), L.ReLU(),
        L.Dense(normal(4, 5), normal(4, scale=0.3)), L.ReLU(),
        L.Dense(normal(3, 4), normal(3, scale=0.3)),
    ])
    conv = Sequential([
        L.Conv2d(normal(3, 2, 3, 3, scale=0.5), normal(3, scale=0.2), stride=2, padding=1), L.ReLU(),
        L.Conv2d(normal(4, 3, 3, 3, scale=0.5), normal(4, scale=0.2), padding=1), L.ReLU(),
        L.Flatten(), L.Dense(normal(3, 64, scale=0.3), normal(3, scale=0.2)),
    ])
    maxpool = Sequential([
        L.Conv2d(normal(4, 2, 3, 3, scale=0.5), normal(4, scale=0.2), padding=1), L.ReLU(),
        L.MaxPool2d(2), L.Conv2d(normal(4, 4, 3, 3, scale=0.5), None), L.ReLU(),
        L.Flatten(), L.Dense(normal(3, 16, scale=0.3), normal(3, scale=0.2)),
    ])
    avgpool = Sequential([
        L.Conv2d(normal(4, 2, 3, 3, scale=0.5), normal(4, scale=0.2), padding=1), L.ReLU(),
        L.AvgPool2d(2), L.Conv2d(normal(4, 4, 3, 3, scale=0.5), normal(4, scale=0.2)), L.ReLU(),
        L.Flatten(), L.Dense(normal(3, 16, scale=0.3), None),
    ])
    resnet = Graph([
        ("conv", L.Conv2d(normal(4, 2, 3, 3, scale=0.5), None, padding=1), "input"),
        ("bn", L.BatchNorm2d(rng.uniform(0.5, 1.5, 4), normal(4, scale=0.2), normal(4, scale=0.2),
                             rng.uniform(0.5, 2.0, 4)), "conv"),
        ("relu", L.ReLU(), "bn"),
        ("block_conv", L.Conv2d(normal(4, 4, 3, 3, scale=0.4), normal(4, scale=0.2), padding=1), "relu"),
        ("block_relu", L.ReLU(), "block_conv"),
        ("sum", Add(), ("block_relu", "relu")),
        ("pool", L.MaxPool2d(2), "sum"),
        ("gap", L.GlobalAvgPool2d(), "pool"), ("flat", L.Flatten(), "gap"),
        ("fc", L.Dense(normal(3, 4, scale=0.5), normal(3, scale=0.2)), "flat"),
    ])
    concat = Graph([
        ("wide", L.Conv2d(normal(3, 2, 3, 3, scale=0.5), normal(3, scale=0.2), padding=1), "input"),
        ("wide_relu", L.ReLU(), "wide"),
        ("narrow", L.Conv2d(normal(2, 2, 1, 1, scale=0.5), normal(2, scale=0.2)), "input"),
        ("narrow_relu", L.ReLU(), "narrow"),
        ("cat", Concat(), ("wide_relu", "narrow_relu")),
        ("avg", L.AvgPool2d(2), "cat"), ("flat", L.Flatten(), "avg"),
        ("fc", L.Dense(normal(3, 80, scale=0.3), normal(3, scale=0.2)), "flat"),
    ])
    return {
        "dense": ("three Dense layers with biases and ReLUs", dense, (6,)),
        "conv": ("Conv2d with stride 2 and padding 1, Conv2d with padding, Dense", conv, (2, 8, 8)),
        "maxpool": ("Conv2d, MaxPool2d 2x2, Conv2d without bias, Dense", maxpool, (2, 8, 8)),
        "avgpool": ("Conv2d, AvgPool2d 2x2, Conv2d, Dense without bias", avgpool, (2, 8, 8)),
        "resnet": ("a graph: Conv2d, BatchNorm2d, a residual block (Conv2d, ReLU, Add), MaxPool2d, GlobalAvgPool2d, "
                   "Dense", resnet, (2, 8, 8)),
        "concat": ("a graph: two Conv2d branches of the input concatenated along the channels, AvgPool2d, Dense",
                   concat, (2, 8, 8)),
    }


SUITE_RULES = ("lrp0", "epsilon:epsilon=0.1", "gamma:gamma=0.25", "alpha_beta:alpha=2,beta=1", "zplus",
               "wsquare", "flat", "zbox+epsilon:epsilon=0.1")


def suite() -> Iterator[Case]:
    """Every rule on every network, and every named composite on the convolutional networks."""
    rng = np.random.default_rng(7)
    for net_name, (description, model, shape) in _networks().items():
        x = rng.uniform(0.0, 1.0, size=(2, *shape))  # inside the zB box [0, 1]
        specs = list(SUITE_RULES) + ([] if net_name == "dense" else list(catalog.COMPOSITES))
        for spec in specs:
            slug = spec.split(":")[0].replace("+", "_then_")
            yield Case(f"{net_name}-{slug}", f"{description}; rules {spec}", model, x, spec)


# ----------------------------------------------------------------------------- writing


def _rule_attributes(group: Any, rule: Any) -> None:
    group.attrs.create("rule", type(rule).__name__, dtype=_STR)
    for f in dataclasses.fields(rule):
        value = getattr(rule, f.name)
        if value is None:
            continue
        if isinstance(value, str):
            group.attrs.create(f.name, value, dtype=_STR)
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            group.create_dataset(f.name, data=value, track_times=False)
        else:
            group.attrs.create(f.name, np.float64(value))


def write_vector(path: str | Path, case: Case) -> Path:
    """Compute ``case`` with the oracle and write its vector file.

    The file has no ``/peers``: ``scripts/record_peers.py`` (``make peers``) adds them, and must be
    run again after the vectors are regenerated.
    """
    e = case.explain()
    out = Path(path)
    with h5py.File(out, "w") as f:
        for key, value in (("format", FORMAT), ("name", case.name), ("description", case.description),
                           ("rule_spec", case.rule_spec), ("profile", case.profile),
                           ("dtype", case.model.dtype.name), ("platform", platform_fingerprint())):
            f.attrs.create(key, value, dtype=_STR)
        f.attrs.create("schema_version", np.int64(SCHEMA_VERSION))
        io.write_model(f.create_group("model"), case.model)
        for key, value in (("input", case.x), ("output", e.output), ("target", e.target)):
            f.create_dataset(key, data=value, track_times=False)
        relevance = f.create_group("relevance")
        for i, r in enumerate(e.layers):
            relevance.create_dataset(f"{i:03d}", data=r, track_times=False)
        rules = f.create_group("rules")
        for i, rule in enumerate(e.rules):
            _rule_attributes(rules.create_group(f"{i:03d}"), rule)
        ledger = f.create_group("ledger")
        for key in ("r_out", "r_in", "absorbed"):
            ledger.create_dataset(key, data=np.stack([getattr(b, key) for b in e.ledger.entries]), track_times=False)
    return out


def write_suite(directory: str | Path) -> list[Path]:
    """Write every case of :func:`suite` to ``directory`` (created if needed)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    return [write_vector(target / f"{case.name}.h5", case) for case in suite()]


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PeerRecord:
    """A peer library's recorded input relevance, and lrp_ref's under the profile that reproduces it."""

    library: str
    relevance: Array
    oracle: Array
    profile: str
    version: str
    call: str


@dataclass(frozen=True)
class StoredVector:
    """A vector file's contents."""

    name: str
    rule_spec: str
    profile: str
    model: Graph
    x: Array
    target: Array
    output: Array
    layers: tuple[Array, ...]
    ledger: dict[str, Array]
    peers: dict[str, PeerRecord]
    platform: str

    def case(self) -> Case:
        """The case that regenerates this vector."""
        return Case(self.name, "", self.model, self.x, self.rule_spec, self.profile)


def read_vector(path: str | Path) -> StoredVector:
    """Read a vector file written by :func:`write_vector`."""
    p = Path(path)
    with h5py.File(p, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ModelFormatError(f"{p}: not an lrp_ref vector file (format attribute {f.attrs.get('format')!r})")
        version = int(f.attrs["schema_version"])
        if version > SCHEMA_VERSION:
            raise ModelFormatError(f"{p}: vector schema {version} is newer than this lrp_ref reads ({SCHEMA_VERSION})")
        relevance = f["relevance"]
        peers = {}
        for name, group in f.get("peers", {}).items():
            rel = group["relevance"]
            peers[name] = PeerRecord(name, np.asarray(rel), np.asarray(group["oracle"]), str(rel.attrs["profile"]),
                                     str(rel.attrs["version"]), str(rel.attrs["call"]))
        return StoredVector(
            name=str(f.attrs["name"]),
            rule_spec=str(f.attrs["rule_spec"]),
            profile=str(f.attrs["profile"]),
            model=io.read_model(f["model"]),
            x=np.asarray(f["input"]),
            target=np.asarray(f["target"]),
            output=np.asarray(f["output"]),
            layers=tuple(np.asarray(relevance[k]) for k in sorted(relevance)),
            ledger={k: np.asarray(v) for k, v in f["ledger"].items()},
            peers=peers,
            platform=str(f.attrs.get("platform", "")),
        )
