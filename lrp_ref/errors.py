"""One exception hierarchy for everything lrp_ref refuses.

Every message says what was expected and what was found, so that the fix is
obvious from the message alone.  Each class also derives from the matching
built-in exception (``ValueError``, ``IndexError``, ...) so that generic
``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ConservationError",
    "IOArgumentError",
    "LayerParameterError",
    "LrpRefError",
    "ModelFormatError",
    "NonFiniteError",
    "RelevanceMismatchError",
    "RuleAssignmentError",
    "RuleParameterError",
    "ShapeError",
    "TargetError",
]


class LrpRefError(Exception):
    """Base class of every error raised by lrp_ref."""


class ShapeError(LrpRefError, ValueError):
    """An array does not have the shape a layer or function expects."""


class LayerParameterError(LrpRefError, ValueError):
    """A layer was constructed with invalid hyper-parameters or parameters."""


class RuleParameterError(LrpRefError, ValueError):
    """A rule was constructed with invalid parameters (e.g. alpha - beta != 1)."""


class RuleAssignmentError(LrpRefError, ValueError):
    """Rules do not fit the model: wrong list length or a rule on a layer it cannot handle."""


class NonFiniteError(LrpRefError, ValueError):
    """NaN or infinity in an input, a parameter or a computed relevance."""


class TargetError(LrpRefError, IndexError):
    """The explained output neuron (target) is out of range or badly shaped."""


class ConservationError(LrpRefError, AssertionError):
    """The relevance ledger does not balance within the stated tolerance."""


class ModelFormatError(LrpRefError, ValueError):
    """A model file is not a valid lrp_ref HDF5 model."""


class ArgumentError(LrpRefError, TypeError, ValueError):
    """An argument has the wrong type or value and no more specific class applies.

    For example a model that is not a ``Sequential``, a profile that is
    neither a name nor a ``Profile``, a negative tolerance.  It derives from
    both ``TypeError`` and ``ValueError``, so code written against either
    keeps working.
    """


class RelevanceMismatchError(LrpRefError, AssertionError):
    """:func:`lrp_ref.testing.assert_relevance_close` failed: the relevances differ beyond the tolerance."""


class IOArgumentError(ArgumentError):
    """``load``, ``save`` or ``check_file`` got an argument that is not what it takes.

    A ``path`` that is not a str, bytes or path-like, or a size limit that is
    not a positive int.  A *file* that is not a valid model is a
    :class:`ModelFormatError` instead.
    """
