"""Cross-checks against PyTorch, zennit and Captum (optional: skipped where torch is missing).

The environment comes from ``scripts/setup_crosscheck.sh``.  zennit imports
``torchvision`` at import time; where torchvision is not installed, the stand-in
in ``stubs/`` (see its docstring) is put on ``sys.path`` so that zennit imports.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_STUBS = Path(__file__).parent / "stubs"

if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(_STUBS))
