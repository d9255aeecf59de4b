"""Stand-in for ``torchvision``, for the cross-checks against zennit only.

zennit imports ``torchvision.models.resnet`` (``BasicBlock``, ``Bottleneck``) at
import time, for its ResNet canonizers.  The torchvision build on PyPI does not
import beside the pinned CPU torch wheel of ``scripts/setup_crosscheck.sh``, and
lrp_ref's cross-checks never touch a ResNet, so this package provides just the two
names zennit imports.  ``tests/crosscheck/conftest.py`` puts the parent folder on
``sys.path``.  Never install or ship it: it is not torchvision.
"""
