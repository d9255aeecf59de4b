"""iNNvestigate cross-check configuration (optional: skipped where TensorFlow or iNNvestigate is missing).

The environment comes from ``scripts/setup_innvestigate.sh`` (TensorFlow CPU 2.14.1, numpy < 2,
iNNvestigate 2.1.2); ``make crosscheck`` runs these tests there.  iNNvestigate 2 builds its
analyzers as TensorFlow 1 graphs: eager execution is switched off and Keras computes in
float64 before any model is built.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

if importlib.util.find_spec("innvestigate") is not None and importlib.util.find_spec("tensorflow") is not None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.keras.backend.set_floatx("float64")
