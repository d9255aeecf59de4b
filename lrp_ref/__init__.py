"""lrp_ref: a pure NumPy reference implementation of Layer-wise Relevance Propagation.

Public API::

    from lrp_ref import Sequential, Graph, Dense, Conv2d, MaxPool2d, AvgPool2d, ReLU, Flatten, Add, Concat
    from lrp_ref import BatchNorm1d, BatchNorm2d, AdaptiveAvgPool2d, GlobalAvgPool2d, same_padding
    from lrp_ref import explain, rules, composites, load, save, canonize
    from lrp_ref import from_torch, to_torch, from_onnx, from_keras, load_any
    from lrp_ref import explain_dataset

See the README for a tutorial and :mod:`lrp_ref.rules` for every rule's formula.
"""

from . import composites, dtd, evaluate, profiles, rules, testing
from .canonize import canonize
from .dataset import DatasetSummary, explain_dataset
from .errors import (
    ArgumentError,
    ConservationError,
    IOArgumentError,
    LayerParameterError,
    LrpRefError,
    ModelFormatError,
    NonFiniteError,
    RelevanceMismatchError,
    RuleAssignmentError,
    RuleParameterError,
    ShapeError,
    TargetError,
)
from .explain import Explanation, explain
from .formats import load_any
from .graph import Graph, Node, Sequential
from .io import load, save
from .keras import from_keras
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    MaxPool2d,
    ReLU,
    same_padding,
)
from .ledger import Ledger
from .merge import Add, Concat
from .onnx import from_onnx  # the onnx package itself is imported only when from_onnx runs
from .torch_bridge import from_torch, to_torch

__version__ = "0.1.0"

__all__ = [
    "AdaptiveAvgPool2d",
    "Add",
    "ArgumentError",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concat",
    "ConservationError",
    "Conv2d",
    "DatasetSummary",
    "Dense",
    "Explanation",
    "Flatten",
    "GlobalAvgPool2d",
    "Graph",
    "IOArgumentError",
    "LayerParameterError",
    "Ledger",
    "LrpRefError",
    "MaxPool2d",
    "ModelFormatError",
    "Node",
    "NonFiniteError",
    "ReLU",
    "RelevanceMismatchError",
    "RuleAssignmentError",
    "RuleParameterError",
    "Sequential",
    "ShapeError",
    "TargetError",
    "__version__",
    "canonize",
    "composites",
    "dtd",
    "evaluate",
    "explain",
    "explain_dataset",
    "from_keras",
    "from_onnx",
    "from_torch",
    "load",
    "load_any",
    "profiles",
    "rules",
    "same_padding",
    "save",
    "testing",
    "to_torch",
]
