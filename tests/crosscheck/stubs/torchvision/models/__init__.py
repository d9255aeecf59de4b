"""Stand-in for ``torchvision.models`` (see ``torchvision/__init__.py`` of this stub)."""
