"""lrp_ref: a pure NumPy reference implementation of Layer-wise Relevance Propagation.

Public API::

    from lrp_ref import Sequential, Dense, Conv2d, MaxPool2d, AvgPool2d, ReLU, Flatten
    from lrp_ref import explain, rules, composites, load, save

See the README for a tutorial and :mod:`lrp_ref.rules` for every rule's formula.
"""

from . import composites, profiles, rules, testing
from .errors import (
    ConservationError,
    IOArgumentError,
    LayerParameterError,
    LrpRefError,
    ModelFormatError,
    NonFiniteError,
    RuleAssignmentError,
    RuleParameterError,
    ShapeError,
    TargetError,
)
from .explain import Explanation, explain
from .io import load, save
from .layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from .ledger import Ledger
from .sequential import Sequential
from .torch_bridge import from_torch, to_torch

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d",
    "ConservationError",
    "Conv2d",
    "Dense",
    "Explanation",
    "Flatten",
    "IOArgumentError",
    "LayerParameterError",
    "Ledger",
    "LrpRefError",
    "MaxPool2d",
    "ModelFormatError",
    "NonFiniteError",
    "ReLU",
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
