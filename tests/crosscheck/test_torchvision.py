"""torchvision's ResNet-18, ResNet-50 and VGG-11-BN through from_torch, canonize and explain, against torch and zennit.

The models are ``torchvision.models.<name>(num_classes=10)`` in float64 and eval mode, with
torchvision's random initialisation (seeded) and every BatchNorm's running statistics and
affine parameters drawn from a seeded generator (so that the batch norms are not the
identity).  The input is a batch of 2 images of 64x64, uniform pixels in [0, 1] normalised
per channel with the ImageNet mean and standard deviation.  VGG-11-BN then up-samples its
2x2 feature maps to 7x7 in ``AdaptiveAvgPool2d``.

* Forward: ``from_torch(m)`` and ``canonize(from_torch(m))`` equal torch's output to 1e-12
  of max|output|.
* LRP-0 on every linear layer (Conv2d, Dense, the average pools, the residual sums, and
  the batch norms when left un-canonized) equals torch's gradient x input to 1e-10 of max|R|,
  with and without ``canonize``.
* zennit with its own canonizers (``zennit.torchvision.ResNetCanonizer`` for the ResNets;
  ``zennit.torchvision.VGGCanonizer``, which is zennit's ``SequentialMergeBatchNorm``, for
  VGG) and the composites ``EpsilonPlusFlat``, ``EpsilonGammaBox(low, high)`` (the
  normalised pixel bounds, per channel) and ``EpsilonAlpha2Beta1``:
  ``explain(canonize(from_torch(m)), x, <lrp_ref's composite>, target, profile="zennit")``
  equals zennit's relevance, started from the one-hot target, to 1e-12 of max|R|.
  These models have ``eps = 0`` in every BatchNorm: zennit's ``MergeBatchNorm`` leaves the
  merged batch norm behind as ``x / sqrt(1 + eps)`` instead of the identity, so with
  torch's default ``eps = 1e-5`` its canonized model is not the original model
  (``test_zennit_merge_batchnorm_keeps_eps`` measures that quirk).
* The ledger balances at every node (1e-12) and conserves over the graph
  (``sum R_in + absorbed = f(x)``) on every explanation above.

Set LRP_REF_RESIDUALS=path to collect the worst residual per model and composite into a JSON file.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tolerant_torchvision import import_torchvision  # noqa: E402

torchvision = import_torchvision()  # before zennit, which imports it
if torchvision is None:
    pytest.skip("torchvision is not installed (scripts/setup_crosscheck.sh installs it)", allow_module_level=True)
pytest.importorskip("zennit")

import peers  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import composites as C  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.layers import BatchNorm, LinearLayer  # noqa: E402
from lrp_ref.merge import Add  # noqa: E402

MODELS = ("resnet18", "resnet50", "vgg11_bn")
#: per model: how many residual sums, how many BatchNorm2d (all merged by canonize), the lrp_ref model class
STRUCTURE = {"resnet18": (8, 20, lrp_ref.Graph), "resnet50": (16, 53, lrp_ref.Graph),
             "vgg11_bn": (0, 8, lrp_ref.Sequential)}
TARGET = np.array([3, 7])
MEAN = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
LOW, HIGH = (0.0 - MEAN) / STD, (1.0 - MEAN) / STD  # the normalised pixel bounds, per channel


@pytest.fixture(scope="module", autouse=True)
def _residuals():
    yield
    if os.environ.get("LRP_REF_RESIDUALS"):
        peers.dump_residuals(os.environ["LRP_REF_RESIDUALS"], "torchvision")


def _batchnorms(module: Any) -> list[Any]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def random_model(name: str, seed: int = 0) -> Any:
    """torchvision's ``name`` (10 classes, float64, eval) with seeded random weights and batch norm statistics."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(num_classes=10).double().eval()
    gen = torch.Generator().manual_seed(seed + 1)

    def draw(n: int, low: float, high: float) -> Any:
        return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)

    for bn in _batchnorms(model):
        n = bn.num_features
        bn.weight.data, bn.bias.data = draw(n, 0.5, 1.5), draw(n, -0.2, 0.2)
        bn.running_mean.data, bn.running_var.data = draw(n, -0.2, 0.2), draw(n, 0.5, 2.0)
    return model


@contextlib.contextmanager
def batchnorm_eps(module: Any, eps: float) -> Iterator[None]:
    """Every BatchNorm of ``module`` with ``eps`` for the duration (restored after)."""
    bns = _batchnorms(module)
    saved = [bn.eps for bn in bns]
    for bn in bns:
        bn.eps = eps
    try:
        yield
    finally:
        for bn, old in zip(bns, saved):
            bn.eps = old


@dataclass
class Case:
    """One torchvision model (default eps), its input and its lrp_ref imports (built on first use)."""

    name: str
    torch_model: Any
    x: np.ndarray

    @functools.cached_property
    def imported(self) -> lrp_ref.Graph:
        return lrp_ref.from_torch(self.torch_model)

    @functools.cached_property
    def canonized(self) -> lrp_ref.Graph:
        return lrp_ref.canonize(self.imported)

    @functools.cached_property
    def canonized_eps0(self) -> lrp_ref.Graph:
        """``canonize(from_torch(m))`` of the model with ``eps = 0`` in every BatchNorm."""
        with batchnorm_eps(self.torch_model, 0.0):
            return lrp_ref.canonize(lrp_ref.from_torch(self.torch_model))

    def canonizers(self) -> list[Any]:
        """zennit's canonizers for this model (fresh instances: they hold the state of one application)."""
        return [ResNetCanonizer()] if self.name.startswith("resnet") else [VGGCanonizer()]

    def output(self) -> np.ndarray:
        with torch.no_grad():
            return self.torch_model(torch.tensor(self.x)).numpy()

    def gradient_times_input(self) -> np.ndarray:
        x = torch.tensor(self.x).requires_grad_(True)
        out = self.torch_model(x)
        out[torch.arange(len(TARGET)), torch.as_tensor(TARGET)].sum().backward()
        return (x * x.grad).detach().numpy()


@pytest.fixture(scope="module", params=MODELS)
def case(request: pytest.FixtureRequest) -> Case:
    rng = np.random.default_rng(sum(map(ord, request.param)))
    x = (rng.uniform(0.0, 1.0, size=(2, 3, 64, 64)) - MEAN) / STD
    return Case(request.param, random_model(request.param), x)


def check_ledger(e: lrp_ref.Explanation) -> None:
    e.ledger.check_balance(1e-12)
    e.ledger.check_conservation()


# ----------------------------------------------------------------------------- structure and forward


def test_import_structure(case: Case) -> None:
    n_add, n_bn, kind = STRUCTURE[case.name]
    assert type(case.imported) is kind
    assert sum(isinstance(layer, Add) for layer in case.imported) == n_add
    assert sum(isinstance(layer, BatchNorm) for layer in case.imported) == n_bn == len(_batchnorms(case.torch_model))
    # canonize merges every batch norm into the convolution before it
    assert not any(isinstance(layer, BatchNorm) for layer in case.canonized)
    assert len(case.canonized.metadata["canonized"]) == n_bn
    assert len(case.canonized) == len(case.imported) - n_bn


@pytest.mark.parametrize("canonized", [False, True], ids=["imported", "canonized"])
def test_forward_equals_torch(case: Case, canonized: bool) -> None:
    expected = case.output()
    model = case.canonized if canonized else case.imported
    np.testing.assert_allclose(model.forward(case.x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


# ----------------------------------------------------------------------------- LRP-0 == gradient x input


@pytest.mark.parametrize("canonized", [False, True], ids=["batchnorm", "canonized"])
def test_lrp0_equals_gradient_times_input(case: Case, canonized: bool) -> None:
    model = case.canonized if canonized else case.imported
    # every linear layer LRP-0: Conv2d, Dense, the average pools, the sums and the batch norms
    rules = [R.LRP0() if isinstance(layer, LinearLayer) else None for layer in model]
    assert any(isinstance(layer, BatchNorm) for layer in model) != canonized
    e = lrp_ref.explain(model, case.x, rules, target=TARGET)
    assert all(isinstance(rule, R.LRP0) for layer, rule in zip(model, e.rules) if isinstance(layer, LinearLayer))
    expected = case.gradient_times_input()
    _, rel = lrp_ref.testing.relevance_error(e.relevance, expected)
    peers.RESIDUALS[f"{case.name}-lrp0-{'canonized' if canonized else 'batchnorm'}"] = rel
    lrp_ref.testing.assert_relevance_close(e.relevance, expected, rtol=1e-10, what="LRP-0 vs gradient x input")
    check_ledger(e)


# ----------------------------------------------------------------------------- zennit


COMPOSITES = {
    "EpsilonPlusFlat": lambda: C.epsilon_plus_flat(),
    "EpsilonGammaBox": lambda: C.epsilon_gamma_box(LOW, HIGH),
    "EpsilonAlpha2Beta1": lambda: C.epsilon_alpha2_beta1(),
}


def one_hot_start() -> np.ndarray:
    """zennit's start relevance (the "zennit" profile's): one-hot of the target."""
    return peers.one_hot(np.zeros((len(TARGET), 10)), TARGET)


@pytest.mark.parametrize("zennit_name", list(COMPOSITES))
def test_zennit_with_its_canonizers(case: Case, zennit_name: str) -> None:
    composite = COMPOSITES[zennit_name]()
    plan = peers.zennit_plan(case.canonized_eps0, composite, case.x.shape)
    assert plan.named is not None and plan.named.short == zennit_name
    with batchnorm_eps(case.torch_model, 0.0):
        relevance = peers.run_zennit_module(case.torch_model, case.x, plan, one_hot_start(), case.canonizers())
    e = lrp_ref.explain(case.canonized_eps0, case.x, composite, target=TARGET, profile="zennit")
    peers.check(relevance, e.relevance, f"{case.name}-{zennit_name}", f"zennit {zennit_name} on {case.name}")
    check_ledger(e)


# ----------------------------------------------------------------------------- zennit's batch norm quirk


def test_zennit_merge_batchnorm_keeps_eps() -> None:
    """zennit's MergeBatchNorm leaves ``x / sqrt(1 + eps)`` behind; lrp_ref's canonize leaves nothing.

    On ResNet-18 with torch's default eps = 1e-5 (20 batch norms, 17 on the longest path):

    * each batch norm zennit leaves behind computes ``x / sqrt(1 + eps)``, about ``x (1 - eps / 2)``;
    * so zennit's canonized forward differs from the original by about 10 x eps / 2
      (measured 4.6e-5 of max|output|), lrp_ref's by rounding only (1.8e-15);
    * so lrp_ref (canonize) and zennit (ResNetCanonizer) differ: by 7.0e-5 of max|R| with
      EpsilonPlusFlat (EpsilonGammaBox 4.8e-4, EpsilonAlpha2Beta1 4.2e-4, measured once);
    * and that is the whole difference: lrp_ref on zennit's canonized model (imported after
      zennit's merge, its identity batch norms kept, which the "zennit" profile passes)
      equals zennit to 1e-12.
    """
    model = random_model("resnet18")
    x = (np.random.default_rng(5).uniform(0.0, 1.0, size=(2, 3, 64, 64)) - MEAN) / STD
    xt = torch.tensor(x)
    eps = 1e-5
    assert all(bn.eps == eps for bn in _batchnorms(model))
    with torch.no_grad():
        original = model(xt).numpy()
    scale = np.abs(original).max()
    ours = lrp_ref.canonize(lrp_ref.from_torch(model))
    assert np.abs(ours.forward(x) - original).max() < 1e-12 * scale

    merges = SequentialMergeBatchNorm().apply(model)
    try:
        assert len(merges) == 20
        bn = model.bn1
        y = torch.randn(2, bn.num_features, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        with torch.no_grad():
            np.testing.assert_allclose(bn(y).numpy(), y.numpy() / np.sqrt(1 + eps), rtol=1e-15)
            theirs = model(xt).numpy()
        deviation = np.abs(theirs - original).max() / scale
        assert 1e-5 < deviation < 1e-4, deviation  # about 10 x eps / 2, far above rounding
        zennit_canonized = lrp_ref.from_torch(model)  # zennit's merged convolutions and left-behind batch norms
    finally:
        for merge in merges:
            merge.remove()
    with torch.no_grad():
        np.testing.assert_array_equal(model(xt).numpy(), original)  # zennit restored the model

    composite = C.epsilon_plus_flat()
    plan = peers.zennit_plan(ours, composite, x.shape)
    relevance = peers.run_zennit_module(model, x, plan, one_hot_start(), [ResNetCanonizer()])
    e = lrp_ref.explain(ours, x, composite, target=TARGET, profile="zennit")
    _, gap = lrp_ref.testing.relevance_error(relevance, e.relevance)
    assert 1e-5 < gap < 1e-3, gap
    same = lrp_ref.explain(zennit_canonized, x, composite, target=TARGET, profile="zennit")
    assert all(isinstance(rule, R.Pass) for layer, rule in zip(zennit_canonized, same.rules)
               if isinstance(layer, BatchNorm))
    peers.check(relevance, same.relevance, "resnet18-eps-quirk-reproduced", "zennit on its own canonized model")
    check_ledger(same)
