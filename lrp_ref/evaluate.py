r"""Pixel-flipping: how fast does the score fall when the most relevant patches go first?

Samek et al. 2017, "Evaluating the visualization of what a deep neural network
has learned", IEEE TNNLS 28(11), Sec. III ("most relevant first", MoRF).
The image is cut into ``p x p`` patches; a relevance map ranks them by the
relevance summed over each patch (and over the channels).  Step ``k`` replaces
the ``k * per_step`` highest-ranked patches by a baseline, giving ``x_k``
(``x_0 = x``), and the target score ``f(x_k)`` is recorded.  The area over the
perturbation curve,

.. math:: \mathrm{AOPC} = \frac{1}{L + 1} \Big\langle \sum_{k=0}^{L} f(x_0) - f(x_k) \Big\rangle_{p(x)},

averaged over the samples, is larger for an explanation whose ranking destroys
the evidence faster.  A random ranking (several seeds: mean and spread) and
gradient x input are the references.

Beside the AOPC, each map's :func:`map_statistics` (its share of positive
relevance and the rate of sign flips between neighbouring pixels) describe
what the seed's claims are about: positive evidence and local artefacts.

Baselines: ``"zero"`` (the model input 0), ``"mean"`` (each image's mean, per
channel), ``"dataset-mean"`` (the mean image of the samples given) and
``"blur"`` (the image smoothed by :func:`scipy.ndimage.gaussian_filter`), or an
array broadcastable to the batch.  Ties in a ranking (a map that is zero on
several patches) are broken by one random key per patch, drawn from the seed
and shared by all methods (so equal maps give equal curves); a map that ranks
nothing (all patches equal) is flipped in random order, and the result counts
such samples (``unranked``).  Everything is reproducible from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ._checks import check_int, real_array, real_number, require_finite
from .composites import Composite
from .errors import ArgumentError, ShapeError
from .graph import Graph
from .layers import Flatten, LinearLayer, MaxPool2d, ReLU
from .merge import Concat
from .rules import Rule

__all__ = ["BASELINES", "Evaluation", "FlippingCurve", "RandomOrders", "baseline_images", "evaluate",
           "flipping_scores", "gradient", "map_statistics", "patch_scores", "pixel_flipping"]

Array = NDArray[Any]
#: The baselines a removed patch can be replaced with (see :func:`baseline_images`).
BASELINES = ("zero", "mean", "dataset-mean", "blur")


@dataclass(frozen=True)
class FlippingCurve:
    """The scores of one ranking method along the flipping steps.

    Attributes
    ----------
    method : str
    scores : array (N, L + 1)
        ``f(x_k)`` for every sample and step (column 0 is ``f(x)``).
    unranked : int
        Samples whose map gives every patch the same score (flipped in random order).
    positive_share, sign_flips : float or None
        The map's statistics (:func:`map_statistics`), averaged over the samples; None for random orders.
    """

    method: str
    scores: Array
    unranked: int = 0
    positive_share: float | None = None
    sign_flips: float | None = None

    @property
    def drops(self) -> Array:
        """``f(x_0) - f(x_k)``, shape (N, L + 1)."""
        return self.scores[:, :1] - self.scores

    @property
    def curve(self) -> Array:
        """The mean drop over the samples at each step, shape (L + 1,)."""
        return self.drops.mean(axis=0)

    @property
    def aopc_per_sample(self) -> Array:
        """``1/(L+1) sum_k f(x_0) - f(x_k)`` per sample, shape (N,)."""
        return self.drops.mean(axis=1)

    @property
    def aopc(self) -> float:
        """AOPC averaged over the samples."""
        return float(self.aopc_per_sample.mean())

    @property
    def sem(self) -> float:
        """Standard error of the AOPC over the samples (0 for one sample)."""
        n = len(self.scores)
        return float(self.aopc_per_sample.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0


@dataclass(frozen=True)
class RandomOrders:
    """Random rankings, one curve per seed."""

    seeds: tuple[int, ...]
    curves: tuple[FlippingCurve, ...]

    @property
    def aopcs(self) -> Array:
        """The AOPC of each seed (averaged over the samples)."""
        return np.array([c.aopc for c in self.curves])

    @property
    def aopc(self) -> float:
        return float(self.aopcs.mean())

    @property
    def spread(self) -> float:
        """Standard deviation of the AOPC over the seeds."""
        return float(self.aopcs.std(ddof=1)) if len(self.curves) > 1 else 0.0

    @property
    def curve(self) -> Array:
        return np.mean([c.curve for c in self.curves], axis=0)

    @property
    def curve_spread(self) -> Array:
        return np.std([c.curve for c in self.curves], axis=0, ddof=1) if len(self.curves) > 1 \
            else np.zeros_like(self.curve)


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`pixel_flipping`: one curve per method, and the random reference."""

    methods: tuple[FlippingCurve, ...]
    random: RandomOrders
    target: Array
    patch: int
    steps: int
    per_step: int
    baseline: str
    seed: int
    labels: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table: AOPC per method (mean ± standard error over samples), best first, and random."""
        n = len(self.target)
        rows = [f"| method | AOPC (mean of {n} samples) | ± s.e. | vs random (random s.d.) | positive share "
                "| sign flips |", "|---|---:|---:|---:|---:|---:|"]
        sd = self.random.spread
        for c in sorted(self.methods, key=lambda c: -c.aopc):
            gap = f"{(c.aopc - self.random.aopc) / sd:+.1f}" if sd > 0 else "n/a (one seed)"
            note = f" ({c.unranked} unranked)" if c.unranked else ""
            stats = " | ".join("-" if v is None else f"{v:.3f}" for v in (c.positive_share, c.sign_flips))
            rows.append(f"| {self.labels.get(c.method, c.method)}{note} | {c.aopc:.4f} | {c.sem:.4f} | {gap} | "
                        f"{stats} |")
        rows.append(f"| random ({len(self.random.seeds)} seeds: mean ± s.d.) | {self.random.aopc:.4f} | "
                    f"{self.random.spread:.4f} | 0 | - | - |")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready numbers."""
        return {
            "reference": "Samek et al. 2017, IEEE TNNLS 28(11): most relevant first, AOPC",
            "patch": self.patch, "steps": self.steps, "per_step": self.per_step, "baseline": self.baseline,
            "seed": self.seed, "samples": len(self.target), "target": self.target.tolist(),
            "methods": {c.method: {"label": self.labels.get(c.method, c.method), "aopc": c.aopc, "sem": c.sem,
                                   "unranked": c.unranked, "positive_share": c.positive_share,
                                   "sign_flips": c.sign_flips, "aopc_per_sample": c.aopc_per_sample.tolist(),
                                   "curve": c.curve.tolist()} for c in self.methods},
            "random": {"seeds": list(self.random.seeds), "aopc_per_seed": self.random.aopcs.tolist(),
                       "aopc": self.random.aopc, "spread": self.random.spread, "curve": self.random.curve.tolist(),
                       "curve_spread": self.random.curve_spread.tolist()},
        }


# ----------------------------------------------------------------------------- pieces


def _images(x: Any, what: str) -> Array:
    arr = real_array(x, what)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ShapeError(f"{what} must be a non-empty batch of images (N, C, H, W); got shape {arr.shape}")
    require_finite(arr, what)
    return arr.astype(np.float64)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def patch_scores(relevance: Any, patch: int) -> Array:
    """Relevance summed over the channels and each ``patch x patch`` block: (N, H / patch, W / patch).

    Raises :class:`ArgumentError` if ``patch`` does not divide the image height and width.
    """
    R = _images(relevance, "relevance")
    n, _, h, w = R.shape
    if not isinstance(patch, (int, np.integer)) or isinstance(patch, bool) or patch < 1:
        raise ArgumentError(f"patch must be a positive int; got {patch!r}")
    if h % patch or w % patch:
        raise ArgumentError(f"patch {patch} does not divide the image {h}x{w}: the patches must tile it; "
                            f"choose a divisor of {h}" + ("" if h == w else f" and of {w}")
                            + f" ({_divisors(int(np.gcd(h, w)))})")
    return R.sum(axis=1).reshape(n, h // patch, patch, w // patch, patch).sum(axis=(2, 4))


def map_statistics(relevance: Any) -> tuple[Array, Array]:
    r"""Two statistics of each heatmap (relevance summed over the channels), per sample.

    * positive share ``sum_i R_i^+ / sum_i |R_i|`` (0 for an all-zero map): how much of the
      map is evidence *for* the class;
    * sign flips: among horizontally or vertically adjacent pixel pairs that both carry
      relevance (``|R| > 1e-12 max|R|``), the fraction whose signs differ (0 without such
      pairs): a measure of local, checkerboard-like variation.
    """
    R = _images(relevance, "relevance").sum(axis=1)
    flat = R.reshape(len(R), -1)
    total = np.abs(flat).sum(axis=1)
    share = np.divide(np.maximum(flat, 0).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    carries = np.abs(R) > 1e-12 * np.abs(flat).max(axis=1)[:, None, None]
    flips, pairs = np.zeros(len(R)), np.zeros(len(R))
    for a, b, ca, cb in ((R[:, :, 1:], R[:, :, :-1], carries[:, :, 1:], carries[:, :, :-1]),
                         (R[:, 1:], R[:, :-1], carries[:, 1:], carries[:, :-1])):
        both = ca & cb
        pairs += both.reshape(len(R), -1).sum(axis=1)
        flips += (both & (a * b < 0)).reshape(len(R), -1).sum(axis=1)
    rate = np.divide(flips, pairs, out=np.zeros_like(flips), where=pairs > 0)
    return share, rate


def _orders(scores: Array, tie_break: Array) -> tuple[Array, int]:
    """Patch indices, most relevant first (ties broken by the random keys ``tie_break``), and the number of
    samples without a ranking."""
    flat = scores.reshape(len(scores), -1)
    order = np.lexsort((tie_break, -flat), axis=-1)
    unranked = int(np.sum(np.all(flat == flat[:, :1], axis=1)))
    return order, unranked


def baseline_images(x: Any, baseline: str | Any, blur_sigma: float = 2.0) -> Array:
    """The values patches are replaced by, per sample: (N, C, H, W)."""
    x = _images(x, "x")
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.zeros_like(x)
        if baseline == "mean":
            return np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape).copy()
        if baseline == "dataset-mean":
            return np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape).copy()
        if baseline == "blur":
            from scipy import ndimage  # type: ignore[import-untyped]  # only the blur baseline needs it

            return np.asarray(ndimage.gaussian_filter(x, sigma=(0, 0, blur_sigma, blur_sigma), mode="nearest"))
        raise ArgumentError(f"baseline must be one of {', '.join(BASELINES)} or an array; got {baseline!r}")
    arr = real_array(baseline, "baseline")
    try:
        b = np.broadcast_to(arr, x.shape)
    except ValueError:
        raise ShapeError(f"baseline of shape {arr.shape} does not broadcast to x {x.shape}") from None
    return _images(b, "baseline")


def flipping_scores(model: Graph, x: Array, order: Array, target: Array, patch: int, steps: int, per_step: int,
                    replacement: Array, batch_size: int = 256) -> Array:
    """``f_target(x_k)`` for k = 0..steps, with patch ``order[i, :k * per_step]`` of sample i replaced: (N, steps + 1).

    The perturbed images are built and scored in batches of ``batch_size``.
    """
    n, _, h, w = x.shape
    rows, cols = h // patch, w // patch
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(n, axis=0), axis=1)
    rank_pixels = np.repeat(np.repeat(rank.reshape(n, rows, cols), patch, axis=1), patch, axis=2)[:, None]
    pairs = [(i, k) for i in range(n) for k in range(steps + 1)]
    scores = np.empty((n, steps + 1))
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        ii = np.array([i for i, _ in chunk])
        kk = np.array([k for _, k in chunk])
        removed = rank_pixels[ii] < (kk * per_step)[:, None, None, None]
        batch = np.where(removed, replacement[ii], x[ii])
        out = model.forward(batch)
        scores[ii, kk] = out[np.arange(len(chunk)), target[ii]]
    return scores


def gradient(model: Graph, x: Any, target: Any) -> Array:
    """The gradient of ``f_target`` with respect to the input, by the layers' adjoints (N, ...).

    ReLU passes where its input is positive, max pooling routes to the first
    arg-max, linear layers (Dense, Conv2d, pooling, batch norm, Add) use their
    adjoint, Flatten and Concat reshape.  Other layers are refused.
    """
    x = _images(x, "x") if np.ndim(x) == 4 else np.asarray(x, dtype=np.float64)
    acts = model.forward_all(x)
    t = np.asarray(target, dtype=np.int64).reshape(-1)
    grads: list[Array | None] = [None] * len(acts)
    g = np.zeros_like(acts[-1])
    g[np.arange(len(x)), t] = 1.0
    grads[-1] = g
    for i in reversed(range(len(model))):
        layer, up = model[i], grads[i + 1]
        if up is None:
            continue
        a = model.pack(i, acts)
        if isinstance(layer, LinearLayer):
            down = layer.for_input(tuple(a.shape[1:])).vjp(up, tuple(a.shape[1:]))
        elif isinstance(layer, ReLU):
            down = up * (a > 0)
        elif isinstance(layer, MaxPool2d):
            down = layer.route(a, up, "first")
        elif isinstance(layer, (Flatten, Concat)):
            down = up.reshape(a.shape)
        else:
            raise ArgumentError(f"gradient: no adjoint for {layer.describe()}")
        for src, part in zip(model.sources(i), model.unpack(i, down, acts)):
            previous = grads[src]
            grads[src] = part if previous is None else previous + part
    assert grads[0] is not None
    return grads[0]


# ----------------------------------------------------------------------------- the evaluation


def pixel_flipping(model: Graph, x: Any, relevances: Mapping[str, Any] | Any, target: Any = None, *, patch: int = 2,
                   steps: int | None = None, per_step: int = 1, baseline: str | Any = "zero",
                   blur_sigma: float = 2.0, seed: int = 0, random_orders: int = 5, batch_size: int = 256,
                   labels: Mapping[str, str] | None = None,
                   progress: Callable[[str], None] | None = None) -> Evaluation:
    """Pixel-flipping (most relevant first) of every relevance map in ``relevances``, and of random orders.

    Parameters
    ----------
    model : Graph or Sequential
    x : array (N, C, H, W)
        Model inputs.
    relevances : mapping name -> array (N, C, H, W), or one array
        The maps that rank the patches (their sign counts: the most positive go first).
    target : int or array (N,), optional
        The score tracked; default each sample's arg-max at ``x``.
    patch : int, default 2
        Side of the square patches; must divide the image height and width.
    steps : int, optional
        Number of flipping steps ``L``; default ``min(100, n_patches // per_step)``.
    per_step : int, default 1
        Patches replaced per step.
    baseline : "zero", "mean", "dataset-mean", "blur" or array
    blur_sigma : float
        Standard deviation (pixels) of the blur baseline.
    seed : int
        Seeds the random orders and the tie-breaking.
    random_orders : int, default 5
        Number of random rankings (seeds derived from ``seed``).
    progress : callable, optional
        Called with the method's name after each curve.
    """
    from .explain import _targets

    x = _images(x, "x")
    n, _, h, w = x.shape
    per_step = check_int(per_step, "per_step", 1, error=ArgumentError)
    if steps is not None:
        steps = check_int(steps, "steps", 1, error=ArgumentError)
    random_orders = check_int(random_orders, "random_orders", 1, error=ArgumentError)
    seed = check_int(seed, "seed", 0, error=ArgumentError)
    blur_sigma = real_number(blur_sigma, "blur_sigma", ArgumentError)
    if not blur_sigma > 0:
        raise ArgumentError(f"blur_sigma must be > 0 (pixels); got {blur_sigma}")
    out = model.forward(x)
    t = _targets(target, out)
    if not isinstance(relevances, Mapping):
        relevances = {"relevance": relevances}
    for name, R in relevances.items():
        shape = _images(R, f"relevance {name!r}").shape
        if shape[0] != n:
            raise ShapeError(f"relevance {name!r} holds {shape[0]} samples; x holds {n}")
        if shape[2:] != (h, w):
            raise ShapeError(f"relevance {name!r} has images of {shape[2]}x{shape[3]}; x has {h}x{w}")
    scores = {name: patch_scores(R, patch) for name, R in relevances.items()}
    n_patches = (h // patch) * (w // patch)
    if per_step < 1 or per_step > n_patches:
        raise ArgumentError(f"per_step must lie in 1..{n_patches} (the number of patches); got {per_step}")
    L = min(100, n_patches // per_step) if steps is None else steps
    if not 1 <= L <= n_patches // per_step:
        raise ArgumentError(f"steps must lie in 1..{n_patches // per_step} ({n_patches} patches of {patch}x{patch}, "
                            f"{per_step} per step); got {L}")
    if random_orders < 1:
        raise ArgumentError(f"random_orders must be >= 1; got {random_orders}")
    replacement = baseline_images(x, baseline, blur_sigma)
    ties, *streams = np.random.SeedSequence(seed).spawn(1 + random_orders)
    tie_break = np.random.default_rng(ties).random((n, n_patches))  # one key per patch, shared by all methods
    curves = []
    for name, s in scores.items():
        order, unranked = _orders(s, tie_break)
        share, flips = map_statistics(relevances[name])
        curves.append(FlippingCurve(name, flipping_scores(model, x, order, t, patch, L, per_step, replacement,
                                                          batch_size), unranked, float(share.mean()),
                                    float(flips.mean())))
        if progress is not None:
            progress(name)
    randoms = []
    seeds = tuple(int(st.generate_state(1)[0]) for st in streams)
    for stream, s_id in zip(streams, seeds):
        rng = np.random.default_rng(stream)
        order = np.argsort(rng.random((n, n_patches)), axis=1)
        randoms.append(FlippingCurve(f"random:{s_id}", flipping_scores(model, x, order, t, patch, L, per_step,
                                                                       replacement, batch_size)))
        if progress is not None:
            progress("random")
    return Evaluation(tuple(curves), RandomOrders(seeds, tuple(randoms)), t, patch, L, per_step,
                      baseline if isinstance(baseline, str) else "array", seed, dict(labels or {}))


def evaluate(model: Graph, x: Any, methods: Sequence[tuple[str, Any]] | str | Rule | Composite | None = None,
             target: Any = None,
             gradient_x_input: bool = True, **kwargs: Any) -> Evaluation:
    """Explain ``x`` with each ``(label, rules)`` of ``methods`` (LRP), add gradient x input, and flip.

    ``rules`` is anything :func:`lrp_ref.explain` takes (a rule, a composite, a
    list) or a name of :mod:`lrp_ref.catalog` (``"epsilon:epsilon=0.25"``,
    ``"zbox+epsilon"``; box rules take the model's ``input_low`` and
    ``input_high``).  Default: the seed's rule comparison
    (:data:`lrp_ref.catalog.SEED_COMPARISON`; its zB methods only if the model
    declares ``input_low`` and ``input_high``).  Keyword arguments go to
    :func:`pixel_flipping`.  One rule, composite or name alone is one method.
    """
    from . import catalog
    from ._cli_inputs import bounds
    from .explain import explain

    x = _images(x, "x")
    t = np.argmax(model.forward(x), axis=1) if target is None else np.broadcast_to(target, (len(x),))
    relevances: dict[str, Any] = {}
    pairs: Sequence[tuple[str, Any]]
    if methods is None:  # without the model's input bounds, the box rules are left out
        pairs = [(label, spec) for label, spec in catalog.SEED_COMPARISON
                 if bounds(model) is not None or not catalog.needs_bounds(spec)]
    elif isinstance(methods, (str, Rule, Composite)):
        pairs = [(methods if isinstance(methods, str) else repr(methods), methods)]
    elif isinstance(methods, Sequence) and all(isinstance(m, tuple) and len(m) == 2 for m in methods):
        pairs = cast("Sequence[tuple[str, Any]]", methods)
    else:
        raise ArgumentError("methods must be a rule, a composite, a name, or a list of (label, rules) pairs, "
                            f"e.g. [('LRP-0', 'lrp0')]; got {methods!r}")
    for label, rules in pairs:
        chosen = catalog.from_spec(rules, bounds(model)) if isinstance(rules, str) else rules
        relevances[label] = explain(model, x, chosen, target=t).relevance
    if gradient_x_input:
        relevances["gradient x input"] = x * gradient(model, x, t)
    return pixel_flipping(model, x, relevances, t, **kwargs)
