#!/usr/bin/env bash
# Create (or bring up to date) the cross-check environment: lrp_ref beside PyTorch (CPU),
# zennit and Captum, for tests/crosscheck/.  Idempotent: re-running only installs what is missing.
#
#   scripts/setup_crosscheck.sh [VENV]      # VENV defaults to .venv-xcheck
#
# * torch is pinned: an unpinned torch pulls multi-GB CUDA builds.
# * zennit, captum and torchvision are installed with --no-deps so that none can replace that
#   torch; their small dependencies are listed explicitly.  torchvision (0.28.0, the release for
#   torch 2.13.0) serves its model classes (tests/crosscheck/test_torchvision.py) and zennit's
#   import.  Its wheel's C operators do not register beside the CPU torch, so a plain
#   `import torchvision` fails ("operator torchvision::nms does not exist"):
#   tests/crosscheck/tolerant_torchvision.py imports it despite them (conftest.py calls it).
# * onnx and onnxscript serve torch.onnx.export (tests/crosscheck/test_onnx_export.py and
#   scripts/export_onnx_fixtures.py); onnxruntime is the forward reference of the float32 exports.
#   None of them depends on torch.
set -euo pipefail

VENV="${1:-.venv-xcheck}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
ZENNIT="${ZENNIT:-zennit==0.5.1}"
CAPTUM="${CAPTUM:-captum==0.9.0}"
TORCHVISION="${TORCHVISION:-torchvision==0.28.0}"
ONNX_PACKAGES="${ONNX_PACKAGES:-onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet)

"${PIP[@]}" "$TORCH"
# dependencies of zennit (click, Pillow) and captum (matplotlib, packaging, tqdm), without torch/torchvision
"${PIP[@]}" numpy scipy h5py pytest hypothesis click Pillow matplotlib packaging tqdm threadpoolctl
"${PIP[@]}" --no-deps "$ZENNIT" "$CAPTUM" "$TORCHVISION"
# shellcheck disable=SC2086  # a list of requirements
"${PIP[@]}" $ONNX_PACKAGES
"${PIP[@]}" -e "$ROOT"

# fail here, not in the tests, if the pieces do not fit together
PYTHONPATH="$ROOT/tests/crosscheck${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" - <<'PY'
from importlib.metadata import version
import torch, lrp_ref
from tolerant_torchvision import import_torchvision
torchvision = import_torchvision()
assert torchvision is not None, "torchvision is not installed"
torchvision.models.resnet18(num_classes=10)  # the model classes work despite the C operators
from zennit.composites import EpsilonGammaBox  # zennit imports the real torchvision
from zennit.torchvision import ResNetCanonizer
from captum.attr import LRP
import onnx, onnxscript, onnxruntime
print(f"cross-check environment ready: torch {torch.__version__}, torchvision {version('torchvision')}, "
      f"zennit {version('zennit')}, captum {version('captum')}, onnx {onnx.__version__}, "
      f"onnxscript {onnxscript.__version__}, onnxruntime {onnxruntime.__version__}, lrp_ref {lrp_ref.__version__}")
PY
