#!/usr/bin/env bash
# Create (or bring up to date) the cross-check environment: lrp_ref beside PyTorch (CPU),
# zennit and Captum, for tests/crosscheck/.  Idempotent: re-running only installs what is missing.
#
#   scripts/setup_crosscheck.sh [VENV]      # VENV defaults to .venv-xcheck
#
# * torch is pinned: an unpinned torch pulls multi-GB CUDA builds.
# * zennit and captum are installed with --no-deps so that neither can replace that torch;
#   their small dependencies are listed explicitly.  zennit also declares torchvision, whose
#   PyPI build does not import beside this torch wheel: tests/crosscheck/stubs/ holds a
#   stand-in (tests/crosscheck/conftest.py puts it on sys.path), so torchvision is not installed.
set -euo pipefail

VENV="${1:-.venv-xcheck}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
ZENNIT="${ZENNIT:-zennit==0.5.1}"
CAPTUM="${CAPTUM:-captum==0.9.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet)

"${PIP[@]}" "$TORCH"
# dependencies of zennit (click, Pillow) and captum (matplotlib, packaging, tqdm), without torch/torchvision
"${PIP[@]}" numpy scipy h5py pytest hypothesis click Pillow matplotlib packaging tqdm threadpoolctl
"${PIP[@]}" --no-deps "$ZENNIT" "$CAPTUM"
"${PIP[@]}" -e "$ROOT"

# fail here, not in the tests, if the pieces do not fit together
PYTHONPATH="$ROOT/tests/crosscheck/stubs${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" - <<'PY'
from importlib.metadata import version
import torch, lrp_ref
from zennit.composites import EpsilonGammaBox  # imports the torchvision stand-in
from captum.attr import LRP
print(f"cross-check environment ready: torch {torch.__version__}, zennit {version('zennit')}, "
      f"captum {version('captum')}, lrp_ref {lrp_ref.__version__}")
PY
