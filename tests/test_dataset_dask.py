"""explain_dataset on a Dask LocalCluster of two single-threaded worker processes equals the single-process run.

Needs the dask extra (part of the test extra); skipped with a message without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from lrp_ref.cli import main
from lrp_ref.dataset import explain_dataset

distributed = pytest.importorskip("distributed", reason="the Dask path needs the dask extra: "
                                                        "pip install 'lrp_ref[dask]'")

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as c:
        yield c


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_workers_match_one_process_bit_for_bit(tmp_path, client):
    labels = f"{SAMPLES}:labels"
    kwargs = dict(raw=True, batch_size=4, chunk_size=6, target=labels, progress=False)
    single = explain_dataset(CNN, f"{SAMPLES}:images", "epsilon_gamma_box", tmp_path / "single.h5", **kwargs)
    dask = explain_dataset(CNN, f"{SAMPLES}:images", "epsilon_gamma_box", tmp_path / "dask.h5", client=client,
                           **kwargs)
    assert dask.computed == single.computed == (0, 1, 2, 3, 4)
    with h5py.File(tmp_path / "single.h5", "r") as a, h5py.File(tmp_path / "dask.h5", "r") as b, \
            h5py.File(SAMPLES, "r") as s:
        for name in a:
            assert_array_equal(a[name][...], b[name][...], err_msg=name)
        assert_array_equal(b["target"][...], s["labels"][...])
    assert digest(tmp_path / "single.h5") == digest(tmp_path / "dask.h5")
    # both workers took part: each loaded (and cached) the model to explain its chunks
    loaded = client.run(lambda: __import__("lrp_ref.dataset").dataset._load_checked.cache_info().currsize)
    assert sorted(loaded.values()) == [1, 1], loaded
    assert not (tmp_path / "dask.h5.parts").exists()


def test_dask_resumes_a_single_process_run(tmp_path, client):
    """Parts are parts: a run interrupted in one process is finished by the workers, with the same bytes."""
    out = tmp_path / "out.h5"
    kwargs = dict(raw=True, batch_size=4, chunk_size=8, progress=False)
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon", tmp_path / "whole.h5", **kwargs)
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon", out, keep_parts=True, **kwargs)
    out.unlink()
    for i in (1, 3):
        (tmp_path / "out.h5.parts" / f"part-{i:06d}.h5").unlink()
    summary = explain_dataset(CNN, f"{SAMPLES}:images", "epsilon", out, client=client, **kwargs)
    assert summary.reused == (0, 2) and summary.computed == (1, 3)
    assert digest(out) == digest(tmp_path / "whole.h5")


def test_worker_errors_reach_the_caller(tmp_path, client):
    np.save(tmp_path / "bad.npy", np.full((5, 28, 28), 300.0), allow_pickle=False)  # outside the raw range 0..255
    with pytest.raises(ValueError, match="outside the model's raw range"):
        explain_dataset(CNN, str(tmp_path / "bad.npy"), "epsilon", tmp_path / "out.h5", raw=True, client=client,
                        progress=False)


def test_command_line_with_a_scheduler(tmp_path, client, capsys):
    out = tmp_path / "cli.h5"
    status = main(["explain-dataset", "--model", str(CNN), "--source", f"{SAMPLES}:images", "--rule", "epsilon",
                   "--out", str(out), "--chunk-size", "10", "--scheduler", client.scheduler.address, "--quiet"])
    assert status == 0, capsys.readouterr().err
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon", tmp_path / "api.h5", raw=True, chunk_size=10,
                    progress=False)
    assert digest(out) == digest(tmp_path / "api.h5")
