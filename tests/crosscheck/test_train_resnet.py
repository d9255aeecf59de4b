"""The shipped ResNet's recipe (scripts/train_mnist.py): a real graph, exported faithfully, trained deterministically.

With random weights and random batch-norm statistics (the trained weights are not needed):
``from_torch`` turns the script's ResNet into an ``lrp_ref.Graph`` with its residual sums and
batch norms, whose forward equals PyTorch's in float64 (1e-12), before and after ``canonize``
(which merges every batch norm); ``epsilon_gamma_box`` explanations balance at every node;
``shipped_model`` attaches the metadata of the other shipped models; and two short trainings
give bit-identical state dicts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lrp_ref  # noqa: E402
from lrp_ref.merge import Add  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_mnist.py"


@pytest.fixture(scope="module")
def tm():
    spec = importlib.util.spec_from_file_location("train_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_mnist"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("train_mnist", None)
    torch.use_deterministic_algorithms(False)  # set_determinism's global switch: leave no trace for other tests


def random_resnet(tm, seed: int = 0):
    """The script's ResNet in float64 with random weights and random batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = tm.build_resnet().double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, 1, 28, 28))


def test_the_resnet_is_a_graph_with_sums_batch_norms_and_projections(tm):
    model = random_resnet(tm)
    g = lrp_ref.from_torch(model)
    assert type(g) is lrp_ref.Graph
    kinds = [type(layer).__name__ for layer in g]
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert kinds.count("BatchNorm2d") == n_bn
    assert kinds.count("Add") == 3
    assert kinds[-3:] == ["AdaptiveAvgPool2d", "Flatten", "Dense"]
    # at least one identity shortcut (a sum reading a ReLU's output) and one projection (reading a batch norm)
    by_name = {node.name: node for node in g.nodes}
    shortcuts = [type(by_name[node.inputs[1]].layer).__name__ for node in g.nodes if isinstance(node.layer, Add)]
    assert "ReLU" in shortcuts and "BatchNorm2d" in shortcuts
    assert g.n_parameters() == sum(p.numel() for p in model.parameters())


def test_forward_equals_torch_before_and_after_canonize(tm):
    model = random_resnet(tm, 1)
    g = lrp_ref.from_torch(model)
    x = digits(6)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(g.forward(x), expected, rtol=0, atol=1e-12 * scale)
    c = lrp_ref.canonize(g)
    assert not any(isinstance(layer, lrp_ref.BatchNorm2d) for layer in c)
    assert len(c.metadata["canonized"]) == sum(isinstance(layer, lrp_ref.BatchNorm2d) for layer in g)
    np.testing.assert_allclose(c.forward(x), expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("canonized", [False, True])
def test_epsilon_gamma_box_balances_at_every_node(tm, canonized):
    g = lrp_ref.from_torch(random_resnet(tm, 2))
    model = lrp_ref.canonize(g) if canonized else g
    e = lrp_ref.explain(model, digits(4, 1), lrp_ref.composites.epsilon_gamma_box(0.0, 1.0))
    e.ledger.check_balance()
    e.ledger.check_conservation()
    assert np.all(np.isfinite(e.relevance))


def test_shipped_model_is_a_graph_with_the_shipped_metadata(tm):
    rng = np.random.default_rng(0)
    data = tm.MnistData(
        train_images=np.zeros((1, 28, 28), np.uint8), train_labels=np.zeros(1, np.int64),
        test_images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), test_labels=rng.integers(0, 10, 20),
    )
    model = random_resnet(tm, 3).float()
    net, accuracy = tm.shipped_model(model, data, seed=0)
    assert type(net) is lrp_ref.Graph and net.dtype == np.float64
    x = data.test_images.astype(np.float64)[:, None] / 255.0
    assert accuracy == np.mean(net.forward(x).argmax(axis=1) == data.test_labels)
    meta = net.metadata
    assert meta["test_accuracy"] == accuracy
    assert meta["input_shape"] == (1, 28, 28) and meta["class_names"] == [str(c) for c in range(10)]
    assert (meta["input_low"], meta["input_high"], meta["input_offset"]) == (0.0, 1.0, 0.0)
    assert meta["training_script"] == "scripts/train_mnist.py" and meta["dataset_license"] == "CC BY-SA 3.0"


def test_training_is_bit_for_bit_repeatable(tm):
    rng = np.random.default_rng(0)
    x = tm.preprocess(rng.integers(0, 256, (256, 28, 28), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, 256))
    cfg = tm.TrainConfig(epochs=2, batch_size=64)
    states = []
    threads = torch.get_num_threads()
    try:
        for _ in range(2):
            tm.set_determinism(cfg.seed)
            model = tm.build_resnet()
            tm.train(model, x, y, cfg, log=lambda _: None)
            states.append(model.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
