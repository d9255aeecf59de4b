#!/usr/bin/env bash
# Create (or bring up to date) the iNNvestigate cross-check environment: lrp_ref beside
# TensorFlow CPU 2.14.1 and iNNvestigate 2.1.2, for tests/crosscheck_innvestigate/.
# About 1.5 GB, so it is part of `make crosscheck`, never of `make test`.
#
#   scripts/setup_innvestigate.sh [VENV]     # VENV defaults to .venv-innvestigate
#
# * iNNvestigate 2.1.2 needs TensorFlow < 2.15 and numpy < 2; it is installed with --no-deps
#   so that it cannot pull another TensorFlow. Its own small dependencies are listed explicitly.
set -euo pipefail

VENV="${1:-.venv-innvestigate}"
PYTHON="${PYTHON:-python3}"
TENSORFLOW="${TENSORFLOW:-tensorflow-cpu==2.14.1}"
INNVESTIGATE="${INNVESTIGATE:-innvestigate==2.1.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet)

"${PIP[@]}" "$TENSORFLOW" "numpy<2" "scipy<1.14" "h5py" pytest hypothesis matplotlib future
"${PIP[@]}" --no-deps "$INNVESTIGATE"
"${PIP[@]}" --no-deps -e "$ROOT"

"$VENV/bin/python" - <<'PY'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from importlib.metadata import version
import tensorflow as tf, innvestigate, lrp_ref
print(f"iNNvestigate environment ready: tensorflow {tf.__version__}, innvestigate {version('innvestigate')}, "
      f"lrp_ref {lrp_ref.__version__}")
PY
