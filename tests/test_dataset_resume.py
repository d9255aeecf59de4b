"""explain_dataset resumes after SIGKILL: finished chunks are verified and kept, the output is bit-identical.

Each case runs explain_dataset in a child process that is killed with SIGKILL at a chosen moment (by itself,
at a deterministic point, or by this process while it runs), then resumes in this process and compares the
output file byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from lrp_ref.dataset import explain_dataset

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
SOURCE = f"{ROOT / 'weights' / 'mnist_samples.h5'}:images"
ARGS = dict(raw=True, batch_size=4, chunk_size=8)  # 30 samples: chunks of 8, 8, 8, 6; two explain calls each

# The child: explain_dataset with one function wrapped so that the process kills itself at the given call.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import lrp_ref.dataset as D
    from lrp_ref import _dataset_run as W, _dataset_store as S

    where, when, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    calls = 0

    def killing(original):
        def wrapper(*args, **kwargs):
            global calls
            calls += 1
            if calls == when:
                if where == "rename":  # the part is written under its temporary name; die before renaming it
                    assert str(args[0]).endswith(".tmp"), args
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapper

    if where == "explain":        # in the middle of a chunk's computation
        W.explain = killing(W.explain)
    elif where == "rename":       # after a part file is complete, before it gets its final name
        S.os.replace = killing(S.os.replace)
    elif where == "assemble":     # while the output is being assembled from the parts
        S.copy_into = killing(S.copy_into)
    elif where == "slow":         # no self-kill: slow chunks, killed from outside
        explain = W.explain
        def slow(*args, **kwargs):
            time.sleep(0.15)
            return explain(*args, **kwargs)
        W.explain = slow
    D.explain_dataset(sys.argv[4], sys.argv[5], "epsilon_gamma_box", out, raw=True, batch_size=4, chunk_size=8,
                      progress=False)
    print("finished")
""")


def child(where: str, when: int, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, where, str(when), str(out), str(CNN), SOURCE],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out.h5"
    explain_dataset(CNN, SOURCE, "epsilon_gamma_box", out, progress=False, **ARGS)  # type: ignore[arg-type]
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_output(path: Path, reference: Path) -> None:
    with h5py.File(path, "r") as a, h5py.File(reference, "r") as b:
        assert set(a) == set(b)
        for name in a:
            assert_array_equal(a[name][...], b[name][...], err_msg=name)
        assert dict(a.attrs) == dict(b.attrs)
    assert digest(path) == digest(reference)


@pytest.mark.parametrize(("where", "when", "kept"), [
    # killed computing chunk 2 (explain calls 5 and 6); part 1 is written by a second thread meanwhile,
    # so it may or may not have been renamed: whatever exists is what must be kept
    ("explain", 6, None),
    ("rename", 3, (0,)),           # renames: run.json, part 0, part 1 (killed: its .tmp is discarded)
    ("assemble", 2, (0, 1, 2, 3)),  # killed assembling the output: every part is kept, OUT.tmp is discarded
])
def test_resume_after_sigkill_is_bit_identical(tmp_path, reference, where, when, kept):
    out = tmp_path / "out.h5"
    proc = child(where, when, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, stdout, stderr)
    parts = tmp_path / "out.h5.parts"
    assert not out.exists()
    found = tuple(sorted(int(p.name[5:11]) for p in parts.glob("part-*.h5")))
    if kept is None:
        assert found in ((0,), (0, 1)), found
        kept = found
    assert found == kept
    leftovers = sorted(p.name for p in tmp_path.rglob("*.tmp"))
    expected = {"explain": [[], ["part-000001.h5.tmp"]], "rename": [["part-000001.h5.tmp"]],
                "assemble": [["out.h5.tmp"]]}[where]
    assert leftovers in expected, leftovers

    summary = explain_dataset(CNN, SOURCE, "epsilon_gamma_box", out, progress=False, **ARGS)  # type: ignore[arg-type]
    assert summary.reused == kept
    assert summary.computed == tuple(i for i in range(4) if i not in kept)
    assert_same_output(out, reference)
    assert not parts.exists() and not (tmp_path / "out.h5.tmp").exists()


def test_resume_after_an_external_sigkill(tmp_path, reference):
    """Killed from outside at whatever point it has reached once two parts exist."""
    out = tmp_path / "out.h5"
    parts = tmp_path / "out.h5.parts"
    proc = child("slow", 0, out)
    deadline = time.monotonic() + 60
    while len(list(parts.glob("part-*.h5"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    finished = sorted(int(p.name[5:11]) for p in parts.glob("part-*.h5"))
    assert 2 <= len(finished) < 4
    summary = explain_dataset(CNN, SOURCE, "epsilon_gamma_box", out, progress=False, **ARGS)  # type: ignore[arg-type]
    assert summary.reused == tuple(finished)
    assert sorted(summary.reused + summary.computed) == [0, 1, 2, 3]
    assert_same_output(out, reference)


def test_a_damaged_part_is_recomputed_and_a_finished_output_verified(tmp_path, reference, capfd):
    out = tmp_path / "out.h5"
    proc = child("assemble", 1, out)  # every part written, killed before assembling
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    part = tmp_path / "out.h5.parts" / "part-000002.h5"
    with h5py.File(part, "r+") as f:  # a flipped value: the file still opens, its checksum fails
        f["relevance"][3, 0, 10, 10] = np.nextafter(f["relevance"][3, 0, 10, 10], np.inf)
    with pytest.warns(RuntimeWarning, match="part-000002.h5 is damaged; chunk 2 is recomputed"):
        summary = explain_dataset(CNN, SOURCE, "epsilon_gamma_box", out, progress=False, **ARGS)  # type: ignore[arg-type]
    assert summary.reused == (0, 1, 3) and summary.computed == (2,)
    assert_same_output(out, reference)
    again = explain_dataset(CNN, SOURCE, "epsilon_gamma_box", out, progress=False, **ARGS)  # type: ignore[arg-type]
    assert again.computed == () and again.reused == (0, 1, 2, 3)
    assert_same_output(out, reference)
