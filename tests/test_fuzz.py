"""The loader fuzzed: a few hundred mutated model files, each loaded in a forked child under limits.

``make fuzz`` runs the same harness (``tests/fuzz_loader.py``) on 10,000 files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fuzz_loader
import pytest

CASES = 300
SEED = 0  # its first 300 cases include two endless loops inside libhdf5 (cases 15 and 234)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
def test_fuzzed_files_load_or_are_refused_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bases = fuzz_loader.base_files(tmp_path)
    results = fuzz_loader.run(fuzz_loader.cases(SEED, CASES, bases), bases, tmp_path, workers=2, timeout=5.0,
                              memory=2 * 2**30)
    contained = fuzz_loader.check_contained(results, bases, tmp_path, timeout=5.0)
    report = fuzz_loader.report(results)
    with capsys.disabled():
        sys.stdout.write(f"\n{CASES} fuzzed model files (seed {SEED}):\n{report}\n"
                         f"crashes and libhdf5 hangs refused by load(untrusted=True): "
                         f"{sum(what.startswith('ModelFormatError') for _, what in contained)} of {len(contained)}\n")
    counts = fuzz_loader.counts(results)
    assert {k: counts[k] for k in fuzz_loader.BAD} == dict.fromkeys(fuzz_loader.BAD, 0), report
    assert counts["loaded"] > 0 and counts["ModelFormatError"] > 0 and counts.get("generator", 0) <= CASES // 50
    escaped = [(r.case, what) for r, what in contained if not what.startswith("ModelFormatError")]
    assert not escaped, escaped  # every crash and libhdf5 hang is a ModelFormatError in untrusted mode
    assert len(contained) == counts["crash"] + counts["libhdf5 hang"]
