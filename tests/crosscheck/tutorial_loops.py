"""The two LRP loops of the Montavon et al. tutorial, re-implemented as the peer for the "tutorial" profile.

G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller, "Layer-Wise Relevance
Propagation: An Overview" (2019), and its companion tutorial (heatmapping.org, "LRP tutorial").
Written from the papers and the tutorial's description, in float64; nothing of lrp_ref's
rules is used here (lrp_ref supplies only the layer containers, to hand the same network to
``lrp_ref.explain``).

* :func:`mlp_loop`: the NumPy MLP loop.  Forward ``A[l+1] = relu(A[l] W[l] + B[l])`` for every
  layer, the top one included (as the tutorial does; it notes that this does not matter for a
  positive output score).  Start ``R[L] = A[L] * one-hot(target)``.  For ``l = L-1 .. 1``:
  ``rho(p) = p + gamma[l] p+`` on weights and biases, ``incr(z) = z + epsilon[l] * RMS(z) + 1e-9``
  with ``RMS(z) = sqrt(mean(z**2))`` over the whole batch tensor, then the four steps
  ``z = incr(A w + b); s = R / z; c = s w^T; R = A c``.  The input layer takes zB with the
  bounds ``low, high``: ``z = A w - low w+ - high w- + 1e-9`` (no bias).
* :func:`vgg_loop`: the PyTorch VGG loop on a list of ``Conv2d`` / ``ReLU`` / ``MaxPool2d``
  modules (dense layers already written as convolutions, as the tutorial's ``toconv`` does).
  Every ``MaxPool2d`` becomes ``AvgPool2d(2)`` in the backward pass; for each index ``l``
  (from the top down to 1) a Conv2d or pool takes
  ``l <= gamma_until``: ``rho(p) = p + gamma p+``, ``incr(z) = z + 1e-9``;
  ``gamma_until < l <= epsilon_until``: ``rho = identity``, ``incr(z) = z + 1e-9 + epsilon RMS(z)``
  (the RMS detached); ``l > epsilon_until``: ``rho = identity``, ``incr(z) = z + 1e-9``;
  ``rho`` modifies weight and bias (:func:`newlayer`); pooling has neither, so only ``incr``
  applies to it.  The four steps use autograd: ``z = incr(newlayer(layer, rho)(A[l]))``,
  ``s = (R[l+1] / z).detach()``, ``(z * s).sum().backward()``, ``R[l] = A[l] * A[l].grad``.
  ReLUs pass the relevance.  The input layer takes zB with per-channel pixel bounds
  ``low, high`` (the normalised images of 0 and 1), bias included in all three terms (it cancels).
  Start ``R = A[L] * one-hot(target)``.

The networks are small and random (weights and biases), so that the checks run in seconds.
"""

# ruff: noqa: E741  (l is the tutorial's layer index)
from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import lrp_ref
from lrp_ref import layers as L

# ----------------------------------------------------------------------------- the MLP loop (NumPy)


@dataclass(frozen=True)
class MLPCase:
    """An MLP in the tutorial's layout (``W[l]`` of shape (in, out)) and its per-layer rule parameters.

    ``gammas[l]`` and ``epsilons[l]`` are the tutorial's ``rho`` and ``incr`` parameters of layer
    ``l >= 1`` (entry 0 unused: the input layer takes zB with ``low``/``high``).
    """

    name: str
    W: tuple[np.ndarray, ...]
    B: tuple[np.ndarray, ...]
    gammas: tuple[float, ...]
    epsilons: tuple[float, ...]
    low: float = -1.0
    high: float = 1.0


def random_mlp(name: str, sizes: Sequence[int], gammas: Sequence[float], epsilons: Sequence[float],
               seed: int) -> MLPCase:
    rng = np.random.default_rng(seed)
    W = tuple(rng.normal(scale=(2.0 / m) ** 0.5, size=(m, n)) for m, n in itertools.pairwise(sizes))
    B = tuple(rng.normal(scale=0.1, size=n) + 0.05 for n in sizes[1:])
    assert len(gammas) == len(epsilons) == len(W)
    return MLPCase(name, W, B, tuple(gammas), tuple(epsilons))


def mlp_input(case: MLPCase, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(case.low, case.high, size=(batch, case.W[0].shape[0]))


def mlp_forward(case: MLPCase, X: np.ndarray) -> list[np.ndarray]:
    A = [X]
    for w, b in zip(case.W, case.B):
        A.append(np.maximum(0.0, A[-1].dot(w) + b))
    return A


def mlp_loop(case: MLPCase, X: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The tutorial's NumPy LRP loop: input relevance (N, d)."""
    A = mlp_forward(case, X)
    n_layers = len(case.W)
    R = [None] * n_layers + [A[-1] * (target[:, None] == np.arange(A[-1].shape[1]))]
    for l in range(1, n_layers)[::-1]:
        g, e = case.gammas[l], case.epsilons[l]
        w = case.W[l] + g * np.maximum(0.0, case.W[l])          # rho
        b = case.B[l] + g * np.maximum(0.0, case.B[l])
        z = A[l].dot(w) + b
        z = z + e * (z**2).mean() ** 0.5 + 1e-9                  # step 1 (incr)
        s = R[l + 1] / z                                         # step 2
        c = s.dot(w.T)                                           # step 3
        R[l] = A[l] * c                                          # step 4
    w = case.W[0]
    wp, wm = np.maximum(0.0, w), np.minimum(0.0, w)
    lb, hb = A[0] * 0 + case.low, A[0] * 0 + case.high
    z = A[0].dot(w) - lb.dot(wp) - hb.dot(wm) + 1e-9            # step 1 (zB)
    s = R[1] / z                                                 # step 2
    c, cp, cm = s.dot(w.T), s.dot(wp.T), s.dot(wm.T)             # step 3
    return A[0] * c - lb * cp - hb * cm                          # step 4


def mlp_model(case: MLPCase) -> lrp_ref.Sequential:
    """The same MLP as an lrp_ref model (weights transposed to (out, in)), a ReLU after every Dense."""
    layers: list[L.Layer] = []
    for w, b in zip(case.W, case.B):
        layers += [L.Dense(w.T.copy(), b.copy()), L.ReLU()]
    return lrp_ref.Sequential(layers)


def mlp_rules_by_hand(case: MLPCase) -> list[lrp_ref.rules.Rule | None]:
    """lrp_ref's rule list for the tutorial's per-layer choice, written out layer by layer."""
    R = lrp_ref.rules
    out: list[R.Rule | None] = [R.ZBox(case.low, case.high), None]
    for g, e in zip(case.gammas[1:], case.epsilons[1:]):
        if g and e:
            raise ValueError("the tutorial never combines gamma and epsilon in one layer")
        out += [R.Gamma(g) if g else R.Epsilon(e, scale="rms") if e else R.LRP0(), None]
    return out


def mlp_assignment_text(case: MLPCase) -> str:
    lines = [f"l=0 Dense {case.W[0].shape[0]}->{case.W[0].shape[1]}: zB, low={case.low:g}, high={case.high:g}, "
             "z = A w - low w+ - high w- + 1e-9 (no bias)"]
    for l in range(1, len(case.W)):
        lines.append(f"l={l} Dense {case.W[l].shape[0]}->{case.W[l].shape[1]}: rho(p) = p + {case.gammas[l]:g} p+, "
                     f"incr(z) = z + {case.epsilons[l]:g} RMS(z) + 1e-9")
    return "\n".join(lines)


MLPS: dict[str, Callable[[], MLPCase]] = {
    # the tutorial's own configuration, 3 layers: gamma 0.1 on layer 1, epsilon 0.1 RMS on layer 2 (the top)
    "mlp-tutorial": lambda: random_mlp("mlp-tutorial", (20, 16, 12, 6), (0.0, 0.1, 0.0), (0.0, 0.0, 0.1), seed=11),
    # deeper: every regime (gamma, epsilon x RMS, LRP-0) on some layers
    "mlp-deep": lambda: random_mlp("mlp-deep", (18, 16, 14, 12, 10, 5), (0.0, 0.25, 0.25, 0.0, 0.0),
                                   (0.0, 0.0, 0.0, 0.25, 0.0), seed=12),
}


# ----------------------------------------------------------------------------- the VGG loop (PyTorch, autograd)

#: ImageNet normalisation, as in the tutorial
MEAN = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


@dataclass(frozen=True)
class VGGCase:
    """A small VGG-like network as the tutorial's flat layer list, and its index ranges.

    ``features`` holds ("conv", weight, bias) / ("relu",) / ("pool",) entries; the classifier
    is ("dense", weight (out, in), bias) entries separated by ReLUs, written as convolutions for
    the loop (the first over the whole last feature map, the others 1x1), as ``toconv`` does.
    """

    name: str
    input_shape: tuple[int, int, int]
    features: tuple[tuple[Any, ...], ...]
    classifier: tuple[tuple[Any, ...], ...]
    gamma_until: int
    epsilon_until: int
    gamma: float = 0.25
    epsilon: float = 0.25

    @property
    def low(self) -> np.ndarray:
        return (0.0 - MEAN) / STD

    @property
    def high(self) -> np.ndarray:
        return (1.0 - MEAN) / STD


def random_vgg(name: str, blocks: Sequence[Sequence[int]], dense: Sequence[int], size: int,
               gamma_blocks: int, epsilon_blocks: int, seed: int) -> VGGCase:
    """``blocks``: output channels of each conv in each block (3x3, padding 1, ReLU), a 2x2 max pool after each.

    The gamma range ends at the pool of block ``gamma_blocks``, the epsilon range at the pool of
    block ``gamma_blocks + epsilon_blocks`` (VGG-16: 3 and 2 of its 5 blocks, indices 16 and 30);
    what follows, conv blocks and classifier, takes LRP-0.
    """
    rng = np.random.default_rng(seed)
    features: list[tuple[Any, ...]] = []
    pools: list[int] = []
    c = 3
    for block in blocks:
        for out in block:
            fan_in = c * 9
            features += [("conv", rng.normal(scale=(2.0 / fan_in) ** 0.5, size=(out, c, 3, 3)),
                          rng.normal(scale=0.05, size=out) + 0.02), ("relu",)]
            c = out
        features.append(("pool",))
        pools.append(len(features) - 1)
        size //= 2
    classifier: list[tuple[Any, ...]] = []
    n_in = c * size * size
    for k, n in enumerate(dense):
        classifier.append(("dense", rng.normal(scale=(2.0 / n_in) ** 0.5, size=(n, n_in)),
                           rng.normal(scale=0.05, size=n)))
        if k < len(dense) - 1:
            classifier.append(("relu",))
        n_in = n
    gamma_until = pools[gamma_blocks - 1]
    epsilon_until = pools[gamma_blocks + epsilon_blocks - 1]
    return VGGCase(name, (3, size * 2 ** len(blocks), size * 2 ** len(blocks)), tuple(features),
                   tuple(classifier), gamma_until, epsilon_until)


VGGS: dict[str, Callable[[], VGGCase]] = {
    # 4 blocks on 16x16: gamma on blocks 1-2, epsilon x RMS on block 3, LRP-0 on block 4 and the classifier
    "vgg-a": lambda: random_vgg("vgg-a", ((4, 4), (6, 6), (8, 8), (8,)), (10, 5), 16, 2, 1, seed=21),
    # the VGG-16 proportions on 5 blocks of 2-3 convs (32x32), ranges after blocks 2 and 4
    "vgg-b": lambda: random_vgg("vgg-b", ((3, 3), (4, 4), (6, 6, 6), (6, 6, 6), (8, 8)), (12, 10, 4), 32, 2, 2,
                                seed=22),
    # VGG-16's layer structure (13 convs in blocks of 2, 2, 3, 3, 3; 3 dense) with few channels: its ranges
    # are the tutorial's own indices, 16 and 30
    "vgg16-shape": lambda: random_vgg("vgg16-shape", ((3, 3), (4, 4), (4, 4, 4), (6, 6, 6), (6, 6, 6)),
                                      (8, 8, 4), 32, 3, 2, seed=23),
}


def vgg_input(case: VGGCase, batch: int, seed: int) -> np.ndarray:
    """Normalised images: U(0, 1) pixels, minus the mean, over the standard deviation (per channel)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.0, 1.0, size=(batch, *case.input_shape)) - MEAN) / STD


def torch_layers(case: VGGCase) -> list[torch.nn.Module]:
    """The flat layer list of the tutorial: features, then the classifier as convolutions (float64)."""
    out: list[torch.nn.Module] = []
    for entry in case.features:
        if entry[0] == "conv":
            w, b = entry[1], entry[2]
            conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1).double()
            conv.weight = torch.nn.Parameter(torch.tensor(w))
            conv.bias = torch.nn.Parameter(torch.tensor(b))
            out.append(conv)
        elif entry[0] == "relu":
            out.append(torch.nn.ReLU())
        else:
            out.append(torch.nn.MaxPool2d(2))
    channels = next(e[1].shape[0] for e in reversed(case.features) if e[0] == "conv")
    first = True
    for entry in case.classifier:
        if entry[0] == "relu":
            out.append(torch.nn.ReLU())
            continue
        w, b = entry[1], entry[2]
        n = w.shape[0]
        if first:  # the first dense layer sees the whole feature map: a convolution as large as the map
            k = round((w.shape[1] // channels) ** 0.5)
            kernel = w.reshape(n, channels, k, k)
            first = False
        else:
            kernel = w.reshape(n, w.shape[1], 1, 1)
        conv = torch.nn.Conv2d(kernel.shape[1], n, kernel.shape[2:]).double()
        conv.weight = torch.nn.Parameter(torch.tensor(kernel))
        conv.bias = torch.nn.Parameter(torch.tensor(b))
        out.append(conv)
    return out


def newlayer(layer: torch.nn.Module, rho: Callable[[torch.Tensor], torch.Tensor]) -> torch.nn.Module:
    """A copy of ``layer`` with ``rho`` applied to its weight and its bias (where it has them)."""
    layer = copy.deepcopy(layer)
    for name in ("weight", "bias"):
        p = getattr(layer, name, None)
        if isinstance(p, torch.Tensor):
            setattr(layer, name, torch.nn.Parameter(rho(p.detach())))
    return layer


def vgg_loop(case: VGGCase, X: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The tutorial's PyTorch LRP loop: input relevance (N, 3, H, W), float64."""
    layers = torch_layers(case)
    n_layers = len(layers)
    A: list[Any] = [torch.tensor(X)] + [None] * n_layers
    with torch.no_grad():
        for l in range(n_layers):
            A[l + 1] = layers[l].forward(A[l])
    n_out = A[-1].shape[1]
    T = torch.tensor((target[:, None] == np.arange(n_out)).astype(np.float64)).reshape(-1, n_out, 1, 1)
    R: list[Any] = [None] * n_layers + [(A[-1] * T).detach()]
    g, e = case.gamma, case.epsilon
    for l in range(1, n_layers)[::-1]:
        A[l] = A[l].detach().requires_grad_(True)
        if isinstance(layers[l], torch.nn.MaxPool2d):
            layers[l] = torch.nn.AvgPool2d(2)
        if isinstance(layers[l], (torch.nn.Conv2d, torch.nn.AvgPool2d)):
            if l <= case.gamma_until:
                def rho(p: torch.Tensor) -> torch.Tensor:
                    return p + g * p.clamp(min=0)

                def incr(z: torch.Tensor) -> torch.Tensor:
                    return z + 1e-9
            elif l <= case.epsilon_until:
                def rho(p: torch.Tensor) -> torch.Tensor:
                    return p

                def incr(z: torch.Tensor) -> torch.Tensor:
                    return z + 1e-9 + e * ((z**2).mean() ** 0.5).detach()
            else:
                def rho(p: torch.Tensor) -> torch.Tensor:
                    return p

                def incr(z: torch.Tensor) -> torch.Tensor:
                    return z + 1e-9
            z = incr(newlayer(layers[l], rho).forward(A[l]))    # step 1
            s = (R[l + 1] / z).detach()                          # step 2
            (z * s).sum().backward()
            c = A[l].grad                                        # step 3
            R[l] = (A[l] * c).detach()                           # step 4
        else:
            R[l] = R[l + 1]
    A[0] = A[0].detach().requires_grad_(True)
    lb = (A[0].detach() * 0 + torch.tensor(case.low)).requires_grad_(True)
    hb = (A[0].detach() * 0 + torch.tensor(case.high)).requires_grad_(True)
    z = layers[0].forward(A[0]) + 1e-9                                       # step 1 (a)
    z = z - newlayer(layers[0], lambda p: p.clamp(min=0)).forward(lb)       # step 1 (b)
    z = z - newlayer(layers[0], lambda p: p.clamp(max=0)).forward(hb)       # step 1 (c)
    s = (R[1] / z).detach()                                                  # step 2
    (z * s).sum().backward()
    c, cp, cm = A[0].grad, lb.grad, hb.grad                                  # step 3
    return (A[0] * c + lb * cp + hb * cm).detach().numpy()                   # step 4


def vgg_output(case: VGGCase, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = torch.tensor(X)
        for layer in torch_layers(case):
            out = layer(out)
    return out.reshape(out.shape[0], -1).numpy()


def vgg_model(case: VGGCase) -> lrp_ref.Sequential:
    """The same network in lrp_ref: the features as they are, then Flatten and Dense layers."""
    layers: list[L.Layer] = []
    for entry in case.features:
        if entry[0] == "conv":
            layers.append(L.Conv2d(entry[1], entry[2], padding=1))
        elif entry[0] == "relu":
            layers.append(L.ReLU())
        else:
            layers.append(L.MaxPool2d(2))
    layers.append(L.Flatten())
    for entry in case.classifier:
        layers.append(L.ReLU() if entry[0] == "relu" else L.Dense(entry[1], entry[2]))
    return lrp_ref.Sequential(layers)


def vgg_rules_by_hand(case: VGGCase) -> list[lrp_ref.rules.Rule | None]:
    """lrp_ref's rule list for the tutorial's assignment, written out layer by layer.

    The lrp_ref model's indices equal the tutorial's up to the end of ``features`` (the ranges
    end there); from then on both take LRP-0.
    """
    R = lrp_ref.rules
    out: list[R.Rule | None] = []
    for l, layer in enumerate(vgg_model(case)):
        middle = case.gamma_until < l <= case.epsilon_until
        if l == 0:
            out.append(R.ZBox(case.low, case.high))
        elif isinstance(layer, (L.Conv2d, L.Dense)):
            out.append(R.Gamma(case.gamma) if l <= case.gamma_until
                       else R.Epsilon(case.epsilon, scale="rms") if middle else R.LRP0())
        elif isinstance(layer, L.MaxPool2d):
            out.append(R.AverageInstead(R.Epsilon(case.epsilon, scale="rms") if middle else R.LRP0()))
        else:
            out.append(None)
    return out


def vgg_assignment_text(case: VGGCase) -> str:
    lines = []
    for l, layer in enumerate(torch_layers(case)):
        kind = type(layer).__name__
        if l == 0:
            lines.append(f"l={l} {kind}: zB, low/high = per-channel (0 - mean) / std and (1 - mean) / std")
        elif isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            shown = "MaxPool2d -> AvgPool2d(2)" if kind == "MaxPool2d" else kind
            if l <= case.gamma_until:
                rho = f"rho(p) = p + {case.gamma:g} p+" if kind == "Conv2d" else "rho: no parameters"
                lines.append(f"l={l} {shown}: {rho}, incr(z) = z + 1e-9")
            elif l <= case.epsilon_until:
                lines.append(f"l={l} {shown}: rho = identity, incr(z) = z + 1e-9 + {case.epsilon:g} RMS(z)")
            else:
                lines.append(f"l={l} {shown}: rho = identity, incr(z) = z + 1e-9")
        else:
            lines.append(f"l={l} {kind}: R passes")
    return "\n".join(lines)


def vgg_parameters(case: VGGCase) -> str:
    """The arguments of ``lrp_ref.composites.tutorial_vgg`` (besides the bounds) for this case, as JSON."""
    return json.dumps({"gamma_until": case.gamma_until, "epsilon_until": case.epsilon_until,
                       "gamma": case.gamma, "epsilon": case.epsilon}, sort_keys=True)


def mlp_parameters(case: MLPCase) -> str:
    """The arguments of ``tutorial_vgg`` (besides the bounds) that give this MLP's assignment, as JSON.

    The MLP's lrp_ref model has Dense layer ``l`` at index ``2 l`` (a ReLU after each).  The
    tutorial's lists must be ranges: gamma on layers 1..a, epsilon on a+1..b, LRP-0 above.
    """
    n = len(case.W)
    a = max((l for l in range(1, n) if case.gammas[l]), default=0)
    b = max((l for l in range(1, n) if case.epsilons[l]), default=a)
    gamma = case.gammas[1] if a else 0.25
    epsilon = case.epsilons[a + 1] if b > a else 0.25
    for l in range(1, n):
        want = (gamma, 0.0) if l <= a else (0.0, epsilon) if l <= b else (0.0, 0.0)
        if (case.gammas[l], case.epsilons[l]) != want:
            raise ValueError(f"{case.name}: layer {l} breaks the gamma / epsilon / LRP-0 ranges")
    return json.dumps({"gamma_until": 2 * a, "epsilon_until": 2 * b, "gamma": gamma, "epsilon": epsilon},
                      sort_keys=True)


#: the cases recorded in tests/golden/tutorial (scripts/record_tutorial.py): batch of 3, input seed 5
GOLDEN = ("mlp-tutorial", "mlp-deep", "vgg-a", "vgg16-shape")
GOLDEN_BATCH, GOLDEN_SEED = 3, 5


def golden_case(name: str) -> dict[str, Any]:
    """Everything a golden file holds for case ``name``: the loop's relevance on the batch and on each sample alone."""
    if name in MLPS:
        mlp = MLPS[name]()
        model = mlp_model(mlp)
        x = mlp_input(mlp, GOLDEN_BATCH, GOLDEN_SEED)
        low, high = np.asarray(mlp.low), np.asarray(mlp.high)
        loop, parameters, text = "mlp", mlp_parameters(mlp), mlp_assignment_text(mlp)

        def run(xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
            return mlp_loop(mlp, xs, ts)
    else:
        vgg = VGGS[name]()
        model = vgg_model(vgg)
        x = vgg_input(vgg, GOLDEN_BATCH, GOLDEN_SEED)
        low, high = vgg.low, vgg.high
        loop, parameters, text = "vgg", vgg_parameters(vgg), vgg_assignment_text(vgg)

        def run(xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
            return vgg_loop(vgg, xs, ts)
    target = np.argmax(model.forward(x), axis=1)
    return {
        "name": name, "loop": loop, "model": model, "x": x, "target": target, "low": low, "high": high,
        "parameters": parameters, "assignment": text,
        "relevance": run(x, target),
        "relevance_single": np.concatenate([run(x[i:i + 1], target[i:i + 1]) for i in range(len(x))]),
    }
