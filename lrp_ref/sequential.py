"""Sequential: a chain of layers, the chain-shaped :class:`~lrp_ref.graph.Graph` (defined in :mod:`lrp_ref.graph`)."""

from __future__ import annotations

from .graph import Sequential

__all__ = ["Sequential"]
