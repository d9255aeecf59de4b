"""Stand-in for ``torchvision``, for the cross-checks against zennit only.

zennit imports ``torchvision.models.resnet`` (``BasicBlock``, ``Bottleneck``) at
import time, for its ResNet canonizers.  ``scripts/setup_crosscheck.sh`` installs the
real torchvision (imported by ``tests/crosscheck/tolerant_torchvision.py``); where it
is missing, this package provides just the two names zennit imports, so that the
cross-checks other than ``test_torchvision.py`` still run.  ``tolerant_torchvision``
puts the parent folder on ``sys.path`` then.  Never install or ship it: it is not
torchvision.
"""
