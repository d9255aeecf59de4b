"""Cross-checks against PyTorch, zennit and Captum (optional: skipped where torch is missing).

The environment comes from ``scripts/setup_crosscheck.sh``.  zennit imports
``torchvision`` at import time: :func:`tolerant_torchvision.import_torchvision`
imports the installed torchvision despite its C operators (see that module), or,
where torchvision is not installed, puts the stand-in of ``stubs/`` on ``sys.path``.
"""

from __future__ import annotations

from tolerant_torchvision import import_torchvision

import_torchvision()
