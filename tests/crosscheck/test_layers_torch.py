"""The layers of issue 9 against PyTorch in float64: batch norm, adaptive/global/padded average pooling,
asymmetric padding, same_padding against ``padding='same'``, and canonize against torch's Conv2d + BatchNorm2d.

Forward passes agree to 1e-12 of max |output| (most are much closer).  Skipped where torch is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import lrp_ref as L  # noqa: E402
from lrp_ref.layers import AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, GlobalAvgPool2d  # noqa: E402

RTOL = 1e-12


def _t(x: np.ndarray):
    return torch.tensor(x, dtype=torch.float64)


def assert_agrees(ours: np.ndarray, theirs, rtol: float = RTOL) -> None:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = max(float(np.abs(theirs).max()), 1e-300)
    assert float(np.abs(ours - theirs).max()) <= rtol * scale, float(np.abs(ours - theirs).max()) / scale


def random_torch_bn(module, seed: int):
    """Random statistics (as after training) on a torch batch norm, in eval mode, float64."""
    g = torch.Generator().manual_seed(seed)
    c = module.num_features
    with torch.no_grad():
        module.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 2)
        module.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        module.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 3)
        module.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 4)
    return module.double().eval()


def lrp_bn(module, cls):
    return cls(module.weight.detach().numpy(), module.bias.detach().numpy(), module.running_mean.numpy(),
               module.running_var.numpy(), eps=module.eps)


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.0])
def test_batchnorm2d_forward(eps: float) -> None:
    module = random_torch_bn(nn.BatchNorm2d(5, eps=eps), 1)
    if eps == 0.0:
        with torch.no_grad():
            module.running_var.add_(0.1)
    x = np.random.default_rng(1).normal(scale=3.0, size=(3, 5, 6, 7))
    with torch.no_grad():
        assert_agrees(lrp_bn(module, BatchNorm2d).forward(x), module(_t(x)))


def test_batchnorm1d_forward() -> None:
    module = random_torch_bn(nn.BatchNorm1d(6), 2)
    x = np.random.default_rng(2).normal(size=(4, 6))
    with torch.no_grad():
        assert_agrees(lrp_bn(module, BatchNorm1d).forward(x), module(_t(x)))


@pytest.mark.parametrize(("hw", "out"), [((6, 6), (3, 3)), ((7, 5), (3, 2)), ((2, 2), (7, 7)), ((1, 3), (4, 4)),
                                         ((5, 3), (2, 5)), ((13, 11), (7, 7)), ((3, 4), (3, 4)), ((9, 9), (1, 1))])
def test_adaptive_avgpool_forward(hw: tuple[int, int], out: tuple[int, int]) -> None:
    x = np.random.default_rng(3).normal(size=(2, 3, *hw))
    with torch.no_grad():
        assert_agrees(AdaptiveAvgPool2d(out).forward(x), nn.AdaptiveAvgPool2d(out)(_t(x)))


def test_global_avgpool_forward() -> None:
    x = np.random.default_rng(4).normal(size=(2, 3, 5, 4))
    with torch.no_grad():
        assert_agrees(GlobalAvgPool2d().forward(x), nn.AdaptiveAvgPool2d(1)(_t(x)))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), [(3, 1, 1, (5, 6)), (3, 2, 1, (6, 7)),
                                                                 ((2, 3), (1, 2), (1, 1), (4, 7)), (4, 2, 2, (7, 8))])
def test_padded_avgpool_forward(kernel, stride, padding, hw, count_include_pad: bool) -> None:
    x = np.random.default_rng(5).normal(size=(2, 2, *hw))
    ours = AvgPool2d(kernel, stride, padding=padding, count_include_pad=count_include_pad)
    theirs = nn.AvgPool2d(kernel, stride, padding=padding, count_include_pad=count_include_pad)
    with torch.no_grad():
        assert_agrees(ours.forward(x), theirs(_t(x)))


def _torch_pad(x, sides, value: float = 0.0):
    top, bottom, left, right = sides
    return F.pad(x, (left, right, top, bottom), value=value)


@pytest.mark.parametrize(("kernel", "stride", "dilation", "sides", "groups", "hw"), [
    (3, 2, 1, "same", 1, (6, 8)),
    ((2, 3), (2, 1), (1, 2), (1, 0, 2, 1), 2, (5, 7)),
    (4, 1, 1, "same", 1, (5, 5)),
    (2, 1, 1, (3, 0, 0, 4), 1, (3, 3)),
])
def test_asymmetric_padded_conv_forward(kernel, stride, dilation, sides, groups: int, hw) -> None:
    rng = np.random.default_rng(6)
    if sides == "same":
        sides = L.same_padding(hw, kernel, stride, dilation)
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    w, b = rng.normal(size=(4, 4 // groups, *k)), rng.normal(size=4)
    x = rng.normal(size=(2, 4, *hw))
    ours = L.Conv2d(w, b, stride=stride, padding=sides, dilation=dilation, groups=groups)
    theirs = F.conv2d(_torch_pad(_t(x), sides), _t(w), _t(b), stride=stride, dilation=dilation, groups=groups)
    assert_agrees(ours.forward(x), theirs)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch copies the input
@pytest.mark.parametrize("kernel", [2, 3, 4, (2, 3)])
def test_same_padding_is_torch_same_at_stride_1(kernel) -> None:
    """PyTorch's padding='same' (stride 1) puts the extra row/column of an even kernel after, as TensorFlow."""
    torch.manual_seed(7)
    module = nn.Conv2d(3, 2, kernel, padding="same", dilation=1).double()
    x = np.random.default_rng(7).normal(size=(2, 3, 6, 5))
    ours = L.Conv2d(module.weight.detach().numpy(), module.bias.detach().numpy(),
                    padding=L.same_padding((6, 5), kernel))
    with torch.no_grad():
        assert_agrees(ours.forward(x), module(_t(x)))


@pytest.mark.parametrize(("kernel", "stride", "hw"), [(2, 2, (5, 7)), (3, 2, (6, 6)), ((3, 2), 1, (4, 5))])
def test_tensorflow_same_pooling(kernel, stride, hw) -> None:
    """Max pooling pads -inf, average pooling (count_include_pad=False) divides by the in-image count."""
    sides = L.same_padding(hw, kernel, stride)
    x = np.random.default_rng(8).normal(size=(2, 3, *hw)) - 5.0
    with torch.no_grad():
        theirs_max = F.max_pool2d(_torch_pad(_t(x), sides, -np.inf), kernel, stride)
        sums = F.avg_pool2d(_torch_pad(_t(x), sides), kernel, stride, divisor_override=1)
        counts = F.avg_pool2d(_torch_pad(torch.ones_like(_t(x)), sides), kernel, stride, divisor_override=1)
    assert_agrees(L.MaxPool2d(kernel, stride, padding=sides).forward(x), theirs_max, rtol=0.0)
    assert_agrees(AvgPool2d(kernel, stride, padding=sides, count_include_pad=False).forward(x), sums / counts)


def test_canonize_against_torch_conv_batchnorm() -> None:
    torch.manual_seed(9)
    conv1, conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, stride=2, bias=False)
    bn1, bn2 = random_torch_bn(nn.BatchNorm2d(4), 10), random_torch_bn(nn.BatchNorm2d(5), 11)
    lin, bn3 = nn.Linear(5 * 2 * 2, 6), random_torch_bn(nn.BatchNorm1d(6), 12)
    net = nn.Sequential(conv1, bn1, nn.ReLU(), conv2, bn2, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), lin,
                        bn3).double().eval()
    model = L.Sequential([
        L.Conv2d(conv1.weight.detach().numpy(), conv1.bias.detach().numpy(), padding=1), lrp_bn(bn1, BatchNorm2d),
        L.ReLU(), L.Conv2d(conv2.weight.detach().numpy(), stride=2), lrp_bn(bn2, BatchNorm2d), L.ReLU(),
        AdaptiveAvgPool2d(2), L.Flatten(), L.Dense(lin.weight.detach().numpy(), lin.bias.detach().numpy()),
        lrp_bn(bn3, BatchNorm1d)])
    x = np.random.default_rng(9).normal(size=(3, 3, 9, 9))
    with torch.no_grad():
        expected = net(_t(x))
    assert_agrees(model.forward(x), expected)
    merged = L.canonize(model)
    assert len(merged) == len(model) - 3
    assert_agrees(merged.forward(x), expected)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_to_torch_keeps_average_pooling_padding(count_include_pad: bool) -> None:
    model = L.Sequential([AvgPool2d(3, 2, padding=1, count_include_pad=count_include_pad)])
    x = np.random.default_rng(10).normal(size=(2, 2, 6, 7))
    with torch.no_grad():
        assert_agrees(model.forward(x), L.to_torch(model)(_t(x)))


def test_to_torch_refuses_asymmetric_padding() -> None:
    for layer in (L.Conv2d(np.ones((1, 1, 3, 3)), padding=(0, 1, 0, 1)), L.MaxPool2d(2, padding=(0, 1, 0, 1)),
                  AvgPool2d(2, padding=(0, 1, 0, 1))):
        with pytest.raises(L.LayerParameterError, match="top, bottom, left, right"):
            L.to_torch(L.Sequential([layer]))
