"""lrp_ref: a pure NumPy reference implementation of Layer-wise Relevance Propagation.

Public API::

    from lrp_ref import Sequential, Graph, Dense, Conv2d, MaxPool2d, AvgPool2d, ReLU, Flatten, Add, Concat
    from lrp_ref import explain, rules, composites, load, save

See the README for a tutorial and :mod:`lrp_ref.rules` for every rule's formula.
"""

from . import composites, profiles, rules, testing
from .errors import (
    ArgumentError,
    ConservationError,
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
from .graph import Graph, Node, Sequential
from .io import load, save
from .layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from .ledger import Ledger
from .merge import Add, Concat
from .torch_bridge import from_torch, to_torch

__version__ = "0.1.0"

__all__ = [
    "Add",
    "ArgumentError",
    "AvgPool2d",
    "Concat",
    "ConservationError",
    "Conv2d",
    "Dense",
    "Explanation",
    "Flatten",
    "Graph",
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
    "composites",
    "explain",
    "from_torch",
    "load",
    "profiles",
    "rules",
    "save",
    "testing",
    "to_torch",
]
