"""The shipped MNIST models and digits: accuracy, provenance, and clean explanations."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import lrp_ref
from lrp_ref import catalog, composites

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def digits(model: lrp_ref.Sequential) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        images, labels = np.asarray(f["images"]), np.asarray(f["labels"])
    x = images.astype(np.float64)[:, None] * model.metadata["input_scale"] + model.metadata["input_offset"]
    return x, labels


@pytest.mark.parametrize("name, accuracy", [("mnist_cnn", 0.99), ("mnist_mlp", 0.975), ("mnist_resnet", 0.993)])
def test_model_metadata_and_accuracy(name, accuracy):
    model = lrp_ref.load(WEIGHTS / f"{name}.h5")
    meta = model.metadata
    assert meta["test_accuracy"] >= accuracy
    assert meta["dataset_license"] == "CC BY-SA 3.0"
    assert meta["input_shape"] == (1, 28, 28)
    assert meta["class_names"] == [str(c) for c in range(10)]
    assert (meta["input_low"], meta["input_high"]) == (0.0, 1.0)
    assert model.dtype == np.float64
    x, labels = digits(model)
    assert np.mean(model.forward(x).argmax(axis=1) == labels) >= 0.95


def test_shipped_samples_are_three_per_class():
    with h5py.File(WEIGHTS / "mnist_samples.h5", "r") as f:
        assert f["images"].shape == (30, 28, 28) and f["images"].dtype == np.uint8
        assert np.bincount(np.asarray(f["labels"]), minlength=10).tolist() == [3] * 10


@pytest.mark.parametrize("label, spec", catalog.SEED_COMPARISON, ids=[s for _, s in catalog.SEED_COMPARISON])
def test_every_seed_rule_balances_on_the_cnn(label, spec):
    model = lrp_ref.load(WEIGHTS / "mnist_cnn.h5")
    x, _ = digits(model)
    e = lrp_ref.explain(model, x[::3], catalog.from_spec(spec, (0.0, 1.0)))
    e.ledger.check_balance()
    e.ledger.check_conservation()
    assert np.all(np.isfinite(e.relevance))


def test_weights_readme_lists_the_shipped_files_with_their_checksums():
    import hashlib

    text = (WEIGHTS / "README.md").read_text(encoding="utf-8")
    for name in ("mnist_cnn.h5", "mnist_mlp.h5", "mnist_resnet.h5", "mnist_samples.h5"):
        digest = hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest()
        assert f"`{name}`" in text and f"`{digest}`" in text, f"weights/README.md: update the sha256 of {name}"
    for name, n_params in (("mnist_cnn", 65_558), ("mnist_mlp", 266_610), ("mnist_resnet", 38_554)):
        model = lrp_ref.load(WEIGHTS / f"{name}.h5")
        assert model.n_parameters() == n_params
        assert f"{100 * model.metadata['test_accuracy']:.2f}%" in text


def test_the_shipped_resnet_is_a_graph_that_canonizes_and_balances():
    model = lrp_ref.load(WEIGHTS / "mnist_resnet.h5")
    assert type(model) is lrp_ref.Graph
    assert sum(isinstance(layer, lrp_ref.Add) for layer in model) == 3
    assert sum(isinstance(layer, lrp_ref.BatchNorm2d) for layer in model) == 9
    merged = lrp_ref.canonize(model)
    x, _ = digits(model)
    np.testing.assert_allclose(merged.forward(x), model.forward(x), rtol=1e-12, atol=1e-12)
    e = lrp_ref.explain(merged, x, composites.epsilon_gamma_box(low=0.0, high=1.0))
    e.ledger.check_balance()
    e.ledger.check_conservation()


def test_readme_numbers_of_the_resnet_demo_row():
    """The README: under epsilon_gamma_box a median 12% of f(x) reaches the pixels on the canonized ResNet, 99.8%
    on the CNN, and some digits get input relevance many times f(x)."""
    rules = composites.epsilon_gamma_box(low=0.0, high=1.0)
    resnet = lrp_ref.canonize(lrp_ref.load(WEIGHTS / "mnist_resnet.h5"))
    x, _ = digits(resnet)
    e = lrp_ref.explain(resnet, x, rules)
    share = e.ledger.input_relevance / e.score
    np.testing.assert_allclose(np.median(share), 0.12, atol=0.005)
    assert share.max() > 10 and share.min() < -10
    cnn = lrp_ref.load(WEIGHTS / "mnist_cnn.h5")
    e = lrp_ref.explain(cnn, digits(cnn)[0], rules)
    np.testing.assert_allclose(np.median(e.ledger.input_relevance / e.score), 0.998, atol=0.0005)
