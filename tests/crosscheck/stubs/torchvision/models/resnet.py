"""Stand-in for ``torchvision.models.resnet``: the two classes zennit imports by name.

zennit uses them only in ``isinstance`` checks of its ResNet canonizers; plain
``torch.nn.Module`` subclasses are enough for that.  See ``torchvision/__init__.py``
of this stub for why it exists.
"""

import torch


class BasicBlock(torch.nn.Module):
    """Placeholder for torchvision's ResNet basic block (never instantiated by the cross-checks)."""


class Bottleneck(torch.nn.Module):
    """Placeholder for torchvision's ResNet bottleneck block (never instantiated by the cross-checks)."""
