"""lrp_ref.torch_bridge: round trips, forward agreement with PyTorch in float64, and every refusal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

torch = pytest.importorskip("torch")
nn = torch.nn

import lrp_ref as L  # noqa: E402
from lrp_ref.torch_bridge import from_torch, to_torch  # noqa: E402


def _torch_forward(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.tensor(x, dtype=torch.float64)).numpy()


def _assert_forward_agrees(module, x: np.ndarray, rtol: float = 1e-12) -> L.Sequential:
    """from_torch(module) computes what module computes (float64), relative to max |output|."""
    module = module.double().eval()
    model = from_torch(module)
    ours, theirs = model.forward(x), _torch_forward(module, x)
    assert ours.shape == theirs.shape
    scale = max(float(np.abs(theirs).max()), 1e-300)
    assert float(np.abs(ours - theirs).max()) <= rtol * scale
    return model


def _seeded(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _random_biases(module) -> None:
    """Non-zero biases everywhere (torch initialises them small; make them matter)."""
    with torch.no_grad():
        for m in module.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.normal_()


# ----------------------------------------------------------------------------- import hygiene


def test_import_lrp_ref_does_not_import_torch():
    code = "import sys, lrp_ref, lrp_ref.torch_bridge; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- forward agreement


def test_dense_forward_agrees():
    rng = _seeded(0)
    module = nn.Sequential(nn.Linear(7, 11), nn.ReLU(), nn.Linear(11, 5, bias=False), nn.ReLU(), nn.Linear(5, 3))
    _random_biases(module)
    model = _assert_forward_agrees(module, rng.normal(size=(4, 7)))
    assert [type(layer) for layer in model] == [L.Dense, L.ReLU, L.Dense, L.ReLU, L.Dense]
    assert model[2].bias is None


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "padding", "dilation", "groups", "size"),
    [
        (3, 4, 3, 1, 0, 1, 1, (9, 9)),
        (3, 4, 3, 2, 1, 1, 1, (9, 10)),
        (2, 6, (3, 2), (2, 1), (1, 0), 1, 2, (8, 7)),
        (4, 4, 3, 1, 2, 2, 4, (9, 9)),                   # depthwise, dilated
        (6, 3, (2, 3), (1, 3), (0, 1), (2, 1), 3, (10, 11)),
        (2, 4, 5, 3, 2, 1, 1, (11, 8)),
        (2, 2, 3, 1, "same", 1, 1, (6, 7)),
        (2, 2, 3, 1, "same", 2, 2, (7, 6)),
        (2, 2, (3, 5), 1, "same", (1, 2), 1, (8, 9)),
        (2, 3, 2, 1, "valid", 1, 1, (5, 6)),
    ],
)
def test_conv_forward_agrees(cin, cout, kernel, stride, padding, dilation, groups, size):
    rng = _seeded(1)
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    module = nn.Sequential(conv, nn.ReLU())
    _random_biases(module)
    model = _assert_forward_agrees(module, rng.normal(size=(2, cin, *size)))
    layer = model[0]
    assert isinstance(layer, L.Conv2d)
    assert layer.groups == groups
    assert layer.dilation == conv.dilation


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (3, 1, 0), (2, 3, 1)],
)
def test_max_pool_forward_agrees(kernel, stride, padding):
    rng = _seeded(2)
    module = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(kernel, stride=stride, padding=padding))
    model = _assert_forward_agrees(module, rng.normal(size=(3, 2, 9, 8)))
    assert isinstance(model[1], L.MaxPool2d)


@pytest.mark.parametrize(("kernel", "stride"), [(2, None), (3, 2), ((2, 3), (1, 2)), (3, 1), (2, 3)])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_forward_agrees(kernel, stride, count_include_pad):
    rng = _seeded(3)
    module = nn.Sequential(nn.AvgPool2d(kernel, stride=stride, count_include_pad=count_include_pad))
    model = _assert_forward_agrees(module, rng.normal(size=(2, 3, 9, 8)))
    assert isinstance(model[0], L.AvgPool2d)


def test_cnn_with_nested_sequentials_forward_agrees():
    rng = _seeded(4)
    module = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Sequential(nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, groups=2), nn.ReLU()), nn.AvgPool2d(1)),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )
    _random_biases(module)
    model = _assert_forward_agrees(module, rng.uniform(0, 1, size=(5, 1, 10, 10)))
    assert [type(layer).__name__ for layer in model] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "Flatten", "Dense", "ReLU", "Dense"
    ]


@given(
    seed=st.integers(0, 2**16),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    groups=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    bias=st.booleans(),
)
def test_random_conv_forward_agrees(seed, cin_per_group, cout_per_group, groups, kernel, stride, dilation, padding,
                                    bias):
    rng = _seeded(seed)
    size = tuple(d * (k - 1) + 1 + int(rng.integers(0, 6)) for k, d in zip(kernel, dilation))
    conv = nn.Conv2d(cin_per_group * groups, cout_per_group * groups, kernel, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, bias=bias)
    module = nn.Sequential(conv)
    _random_biases(module)
    _assert_forward_agrees(module, rng.normal(size=(2, cin_per_group * groups, *size)))


def test_float32_torch_weights_convert_exactly():
    module = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))  # float32
    model = from_torch(module)
    assert model.dtype == np.float64
    assert_array_equal(model[0].weight, module[0].weight.detach().double().numpy())
    assert_array_equal(model[2].bias, module[2].bias.detach().double().numpy())
    model32 = from_torch(module, dtype=np.float32)
    assert model32.dtype == np.float32
    assert_array_equal(model32[0].weight, module[0].weight.detach().numpy())


# ----------------------------------------------------------------------------- round trips


def _lrp_ref_model(rng: np.random.Generator) -> L.Sequential:
    return L.Sequential([
        L.Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=(1, 2), padding=(1, 2), dilation=(2, 1)),
        L.ReLU(),
        L.MaxPool2d(3, stride=2, padding=1),
        L.Conv2d(rng.normal(size=(6, 2, 2, 2)), None, groups=2),
        L.ReLU(),
        L.AvgPool2d(2, stride=1),
        L.Flatten(),
        L.Dense(rng.normal(size=(5, 6 * 1 * 2)), rng.normal(size=5)),
        L.ReLU(),
        L.Dense(rng.normal(size=(3, 5)), None),
    ])


def test_round_trip_lrp_ref_torch_lrp_ref():
    rng = np.random.default_rng(5)
    model = _lrp_ref_model(rng)
    module = to_torch(model)
    assert not module.training
    assert all(p.dtype == torch.float64 for p in module.parameters())
    again = from_torch(module)
    assert again.describe() == model.describe()
    for a, b in zip(model, again):
        for name in ("weight", "bias", "stride", "padding", "dilation", "groups", "kernel_size"):
            va, vb = getattr(a, name, None), getattr(b, name, None)
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                assert_array_equal(va, vb)
            else:
                assert va == vb, (a, name)
    x = rng.normal(size=(2, 1, 9, 9))
    assert np.abs(model.forward(x) - _torch_forward(module, x)).max() <= 1e-12 * np.abs(model.forward(x)).max()


def test_round_trip_torch_lrp_ref_torch():
    _seeded(6)
    module = nn.Sequential(
        nn.Conv2d(3, 4, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=1), nn.ReLU(),
        nn.MaxPool2d(2, stride=1, padding=1), nn.AvgPool2d((2, 1)), nn.Flatten(), nn.Linear(4 * 3 * 4, 2),
    ).double()
    again = to_torch(from_torch(module))
    assert [type(m) for m in again] == [type(m) for m in module]
    theirs, ours = module.state_dict(), again.state_dict()
    assert list(theirs) == list(ours)
    for key in theirs:
        assert torch.equal(theirs[key], ours[key]), key
    for m, n in zip(module, again):
        for name in ("stride", "padding", "dilation", "groups", "kernel_size"):
            if hasattr(m, name):
                a, b = getattr(m, name), getattr(n, name)
                a = (a, a) if isinstance(a, int) else tuple(a)
                b = (b, b) if isinstance(b, int) else tuple(b)
                assert a == b, (m, name)


def test_to_torch_of_a_float32_model_has_float64_parameters():
    model = _lrp_ref_model(np.random.default_rng(7)).astype(np.float32)
    assert all(p.dtype == torch.float64 for p in to_torch(model).parameters())


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("module", "index", "name", "fragment"),
    [
        (nn.Sequential(nn.Linear(2, 2), nn.Tanh()), 1, "torch.nn.Tanh", "not supported"),
        (nn.Sequential(nn.Conv1d(2, 2, 3)), 0, "torch.nn.Conv1d", "not supported"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), 0, "torch.nn.Conv2d", "padding_mode"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")), 0, "torch.nn.Conv2d", "padding_mode"),
        (nn.Sequential(nn.Conv2d(2, 2, 2, padding="same")), 0, "torch.nn.Conv2d", "padding='same'"),
        (nn.Sequential(nn.Conv2d(2, 2, (3, 4), padding="same")), 0, "torch.nn.Conv2d", "padding='same'"),
        (nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, dilation=2)), 1, "torch.nn.MaxPool2d", "dilation"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), 0, "torch.nn.MaxPool2d", "ceil_mode"),
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), 0, "torch.nn.MaxPool2d", "return_indices"),
        (nn.Sequential(nn.MaxPool2d(2, padding=2)), 0, "torch.nn.MaxPool2d", "padding"),
        (nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), 0, "torch.nn.AvgPool2d", "ceil_mode"),
        (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), 0, "torch.nn.AvgPool2d", "divisor_override"),
        (nn.Sequential(nn.Flatten(start_dim=2)), 0, "torch.nn.Flatten", "start_dim"),
        (nn.Sequential(nn.Flatten(end_dim=2)), 0, "torch.nn.Flatten", "end_dim"),
        (nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Sigmoid())), 2, "torch.nn.Sigmoid",
         "not supported"),
    ],
)
def test_refusals_name_index_type_and_what_is_supported(module, index, name, fragment):
    with pytest.raises(L.LayerParameterError) as info:
        from_torch(module)
    message = str(info.value)
    assert message.startswith(f"module {index} ("), message
    assert name in message
    assert fragment in message
    assert "torch.nn.Linear" in message or "at most half" in message  # what is supported, or lrp_ref's own rule


def test_nested_refusal_names_the_dotted_path():
    module = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Sequential(nn.ELU())))
    with pytest.raises(L.LayerParameterError, match=r"module 2 \('1\.1\.0', torch\.nn\.ELU\)"):
        from_torch(module)


def test_subclasses_are_refused():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(L.LayerParameterError, match="MyLinear"):
        from_torch(nn.Sequential(MyLinear(2, 2)))


def test_non_modules_untraceable_and_empty_are_refused():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        from_torch([nn.Linear(2, 2)])
    with pytest.raises(L.LayerParameterError, match=r"could not trace ModuleList with torch\.fx"):
        from_torch(nn.ModuleList([nn.Linear(2, 2)]))
    with pytest.raises(L.LayerParameterError, match="no layers"):
        from_torch(nn.Sequential())
    with pytest.raises(L.LayerParameterError, match="float32 or float64"):
        from_torch(nn.Sequential(nn.ReLU()), dtype=np.float16)


def test_to_torch_refuses_modified_average_pooling_and_non_models():
    pool = L.AvgPool2d(2).with_weight(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(L.LayerParameterError, match="modified window weights"):
        to_torch(L.Sequential([pool]))
    with pytest.raises(TypeError, match=r"lrp_ref\.Sequential"):
        to_torch([L.ReLU()])
