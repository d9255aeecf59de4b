"""explain_dataset: the same numbers as explain, a documented layout, bounded memory, refusals, the command line.

The resume after a killed run is in test_dataset_resume.py, the Dask path in test_dataset_dask.py.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lrp_ref
from lrp_ref import composites, rules
from lrp_ref.cli import main
from lrp_ref.dataset import explain_dataset
from lrp_ref.errors import ArgumentError, ShapeError, TargetError

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"
DATASETS = ("relevance", "target", "score", "relevance_sum", "output", "absorbed", "residual", "scale",
            "chunk_start", "chunk_input_sha256", "chunk_output_sha256", "layers", "layer_rules")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][...] for name in f}


def mnist_inputs(model: lrp_ref.Graph) -> np.ndarray:
    """The shipped digits as model inputs, computed here from the metadata (not by the code under test)."""
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][...]
    meta = model.metadata
    return raw[:, None].astype(np.float64) * meta["input_scale"] + meta["input_offset"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_dataset_equals_explain_batch_by_batch(tmp_path, dtype):
    model = lrp_ref.load(CNN).astype(dtype)
    x = mnist_inputs(model)
    composite = composites.epsilon_gamma_box(low=0.0, high=1.0)
    summary = explain_dataset(model, x, composite, tmp_path / "out.h5", batch_size=4, chunk_size=12, progress=False)
    assert summary.n_chunks == 3 and summary.computed == (0, 1, 2) and summary.reused == ()
    got = read(tmp_path / "out.h5")
    # batches start at every chunk boundary: 0-3, 4-7, 8-11 | 12-15, ... | 24-27, 28-29
    starts = [s for c in range(0, 30, 12) for s in range(c, min(c + 12, 30), 4)]
    for s in starts:
        stop = min(s + 4, (s // 12 + 1) * 12, 30)
        e = lrp_ref.explain(model, x[s:stop], composite)
        assert_array_equal(got["relevance"][s:stop], e.relevance)
        assert_array_equal(got["target"][s:stop], e.target)
        assert_array_equal(got["score"][s:stop], e.score)
        assert_array_equal(got["output"][s:stop], e.output)
        assert_array_equal(got["relevance_sum"][s:stop], e.ledger.input_relevance)
        for k, entry in enumerate(e.ledger.entries):
            assert_array_equal(got["absorbed"][s:stop, k], entry.absorbed)
            assert_array_equal(got["residual"][s:stop, k], entry.residual)
            assert_array_equal(got["scale"][s:stop, k], entry.scale)
    assert got["relevance"].dtype == np.dtype(dtype)
    # the columns line up: sum R_input + absorbed over layers = f(x), and the score is the target's output
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(got["relevance_sum"] + got["absorbed"].sum(axis=1), got["score"], rtol=rtol, atol=0)
    assert_allclose(got["relevance"].reshape(30, -1).sum(axis=1), got["relevance_sum"], rtol=rtol * 10, atol=0)
    assert_array_equal(got["score"], got["output"][np.arange(30), got["target"]])
    assert_array_equal(got["chunk_start"], [0, 12, 24])
    assert [s.decode() for s in got["layer_rules"]] == [repr(r) for r in e.rules]
    assert summary.unbalanced == 0 and summary.max_residual <= rtol


def test_layout_matches_the_documentation(tmp_path):
    """docs/dataset.md names every dataset and root attribute an output holds, and nothing else."""
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon_plus_flat", tmp_path / "out.h5", raw=True, chunk_size=16,
                    progress=False)
    doc = (ROOT / "docs" / "dataset.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, flags=re.MULTILINE))
    with h5py.File(tmp_path / "out.h5", "r") as f:
        present = set(f) | set(f.attrs)
        assert f["relevance"].compression == "gzip" and f["relevance"].shuffle
        assert f.attrs["model_sha256"] == sha256(CNN)
        assert f.attrs["lrp_ref_version"] == lrp_ref.__version__
    assert present == documented, (present - documented, documented - present)
    assert set(DATASETS) <= present


def test_raw_source_and_per_sample_targets_from_hdf5(tmp_path):
    model = lrp_ref.load(CNN)
    x = mnist_inputs(model)
    with h5py.File(SAMPLES, "r") as f:
        labels = f["labels"][...]
    wrong = (labels + 1) % 10  # explain a class that is not the prediction, so a dropped target shows
    np.save(tmp_path / "targets.npy", wrong, allow_pickle=False)
    summary = explain_dataset(CNN, f"{SAMPLES}:images", "epsilon:epsilon=0.25", tmp_path / "out.h5", raw=True,
                              target=str(tmp_path / "targets.npy"), batch_size=8, chunk_size=16, progress=False)
    got = read(tmp_path / "out.h5")
    assert_array_equal(got["target"], wrong)
    for s in (0, 8, 16, 24):
        stop = min(s + 8, 30)
        e = lrp_ref.explain(model, x[s:stop], rules.Epsilon(0.25), target=wrong[s:stop])
        assert_allclose(got["relevance"][s:stop], e.relevance, rtol=1e-12, atol=1e-15)
    assert summary.n_samples == 30


def test_memory_does_not_grow_with_the_dataset(tmp_path):
    """Peak traced memory for 32 chunks is that of 8 chunks, and far below the 32 chunks' relevance.

    A first run fills Python's and NumPy's free lists of small objects, which tracemalloc counts as held.
    The peak varies by up to a chunk with the timing of the writer thread (a part written while the next
    chunk is explained), hence the margin; holding the output would add five times the whole peak.
    """
    rng = np.random.default_rng(0)
    model = lrp_ref.Sequential([lrp_ref.Dense(rng.normal(size=(16, 3072)) * 0.05, rng.normal(size=16)),
                                lrp_ref.ReLU(), lrp_ref.Dense(rng.normal(size=(5, 16)), rng.normal(size=5))])
    peaks = {}
    for run, n in enumerate((64, 128, 512)):
        x = rng.uniform(0, 1, size=(n, 3072))
        gc.collect()
        tracemalloc.start()
        explain_dataset(model, x, rules.Epsilon(0.1), tmp_path / f"out{run}.h5", batch_size=8, chunk_size=16,
                        progress=False)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del x
    whole = 512 * 3072 * 8  # bytes of the 512 samples' relevance alone
    assert peaks[512] < whole / 4, peaks
    assert peaks[512] <= 1.3 * peaks[128], peaks


def test_a_different_run_is_refused_and_overwrite_replaces_it(tmp_path):
    out = tmp_path / "out.h5"
    source = f"{SAMPLES}:images"
    explain_dataset(CNN, source, "epsilon", out, raw=True, chunk_size=16, progress=False)
    first = sha256(out)
    again = explain_dataset(CNN, source, "epsilon", out, raw=True, chunk_size=16, progress=False)
    assert again.computed == () and again.reused == (0, 1) and sha256(out) == first
    for kwargs, key in ((dict(rules="epsilon:epsilon=0.5"), "layer_rules"), (dict(chunk_size=8), "chunk_size"),
                        (dict(batch_size=8), "batch_size"), (dict(dtype="float32"), "dtype"),
                        (dict(profile="zennit"), "profile")):
        call = dict(model=CNN, source=source, rules="epsilon", out=out, raw=True, chunk_size=16, progress=False)
        call.update(kwargs)
        with pytest.raises(ArgumentError, match=f"holds a different run.*{key}: recorded"):
            explain_dataset(**call)  # type: ignore[arg-type]
    assert sha256(out) == first
    replaced = explain_dataset(CNN, source, "epsilon:epsilon=0.5", out, raw=True, chunk_size=16, progress=False,
                               overwrite=True)
    assert replaced.computed == (0, 1) and sha256(out) != first


def test_a_changed_source_is_refused(tmp_path):
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][...]
    np.save(tmp_path / "digits.npy", raw, allow_pickle=False)
    out = tmp_path / "out.h5"
    explain_dataset(CNN, str(tmp_path / "digits.npy"), "epsilon", out, raw=True, chunk_size=16, progress=False,
                    keep_parts=True)
    changed = raw.copy()
    changed[20, 14, 14] ^= 1  # one pixel of chunk 1
    np.save(tmp_path / "digits.npy", changed, allow_pickle=False)
    with pytest.raises(ArgumentError, match=r"chunk 1 .*does not match its checksums"):
        explain_dataset(CNN, str(tmp_path / "digits.npy"), "epsilon", out, raw=True, chunk_size=16, progress=False)
    out.unlink()  # the parts remain: resuming from them checks their inputs too
    with pytest.raises(ArgumentError, match=r"source rows 16..29 .*differ.*source changed"):
        explain_dataset(CNN, str(tmp_path / "digits.npy"), "epsilon", out, raw=True, chunk_size=16, progress=False)


def test_bad_arguments_are_refused(tmp_path):
    model = lrp_ref.load(CNN)
    x = mnist_inputs(model)
    out = tmp_path / "out.h5"
    with pytest.raises(ArgumentError, match="batch_size must be a positive int"):
        explain_dataset(model, x, "epsilon", out, batch_size=0)
    with pytest.raises(ArgumentError, match="chunk_size must be a positive int"):
        explain_dataset(model, x, "epsilon", out, chunk_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match=r"expected \(30,\)"):
        explain_dataset(model, x, "epsilon", out, target=np.zeros(29, dtype=int))
    with pytest.raises(ShapeError, match="does not fit the model"):
        explain_dataset(model, x[:, 0], "epsilon", out)
    with pytest.raises(ArgumentError, match="outside the model's raw range"):
        explain_dataset(model, x[:, 0] * 300, "epsilon", out, raw=True)
    with pytest.raises(ArgumentError, match=r"expected 'file.h5:dataset/path'"):
        explain_dataset(model, "digits", "epsilon", out)
    with pytest.raises(ArgumentError, match=r"no dataset '/nope'.*images, indices, labels"):
        explain_dataset(model, f"{SAMPLES}:nope", "epsilon", out)
    with pytest.raises(ArgumentError, match=r"model must be a file path.*rules must be a specification string"):
        explain_dataset(model, f"{SAMPLES}:images", rules.Epsilon(), out, client=object())
    with pytest.raises(ArgumentError, match="cannot be sent to Dask workers"):
        explain_dataset(CNN, x, "epsilon", out, client=object())
    (tmp_path / "other.h5").write_bytes(b"not hdf5")
    with pytest.raises(ArgumentError, match="is not an explain_dataset output"):
        explain_dataset(model, x, "epsilon", tmp_path / "other.h5")
    assert not out.exists()


def test_command_line_writes_the_same_file(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    status = main(["explain-dataset", "--model", str(CNN), "--source", f"{SAMPLES}:images", "--rule",
                   "epsilon_gamma_box", "--out", str(out), "--batch-size", "8", "--chunk-size", "16"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "30 samples in 2 chunks" in captured.out and "0 unbalanced" in captured.out
    assert "explain-dataset [########################] 30/30" in captured.err
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon_gamma_box", tmp_path / "api.h5", raw=True, batch_size=8,
                    chunk_size=16, progress=False)
    cli, api = read(out), read(tmp_path / "api.h5")
    for name in DATASETS:
        assert_array_equal(cli[name], api[name], err_msg=name)
    status = main(["explain-dataset", "--model", str(CNN), "--source", f"{SAMPLES}:images", "--rule", "epsilon",
                   "--out", str(out)])
    assert status == 2
    assert "holds a different run" in capsys.readouterr().err
    status = main(["explain-dataset", "--model", str(CNN), "--source", f"{SAMPLES}:images", "--rule", "epsilon",
                   "--out", str(out), "--preprocessed"])
    err = capsys.readouterr().err
    assert status == 2 and "does not fit the model" in err


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    from tests.test_readme import python_blocks, run_block

    (tmp_path / "weights").symlink_to(ROOT / "weights")
    monkeypatch.chdir(tmp_path)
    namespace, printed = run_block(next(b for b in python_blocks() if "explain_dataset(" in b))
    assert "30 samples in 1 chunk " in printed and "0 unbalanced" in printed
    assert namespace["summary"].computed == (0,)  # type: ignore[attr-defined]
    got = read(tmp_path / "relevance.h5")
    model = lrp_ref.load(CNN).astype(np.float32)
    e = lrp_ref.explain(model, mnist_inputs(model), lrp_ref.catalog.from_spec("epsilon_gamma_box", (0.0, 1.0)))
    assert_allclose(got["relevance"], e.relevance, rtol=1e-4, atol=1e-6 * np.abs(e.relevance).max())
    assert "explain-dataset [" in capsys.readouterr().err


def test_a_worker_with_another_lrp_ref_version_refuses(tmp_path):
    """What a Dask task does first: the run's identity names the driver's version (no dask needed here)."""
    import json

    from lrp_ref.dataset import _dask_chunk

    job = {"identity": json.dumps({"lrp_ref_version": "0.0.0-other"}), "model": str(CNN)}
    with pytest.raises(ArgumentError, match=r"this Dask worker has lrp_ref .*, the run 0\.0\.0-other"):
        _dask_chunk(json.dumps(job), 0)


def test_progress_bar_on_a_terminal_shows_the_eta(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    explain_dataset(CNN, f"{SAMPLES}:images", "epsilon", tmp_path / "out.h5", raw=True, batch_size=5, chunk_size=10)
    err = capsys.readouterr().err
    frames = err.split("\r")[1:]  # redrawn in place, one frame per batch
    assert len(frames) == 6, err
    assert all(f.startswith("explain-dataset [") for f in frames)
    assert "ETA" in frames[0] and " 5/30 " in frames[0] and "chunk 1/3" in frames[0]
    assert " 30/30 " in frames[-1] and "ETA" not in frames[-1] and frames[-1].endswith("\n")
