"""Make ``import torchvision`` (and so ``import zennit``) work in the cross-check environment.

zennit imports ``torchvision.models.resnet`` at import time.  Two cases:

* torchvision is installed (``scripts/setup_crosscheck.sh`` installs 0.28.0, the release for
  torch 2.13.0, with ``--no-deps``).  Its wheel carries C operators built for CUDA that do not
  register beside the CPU torch wheel, so a plain ``import torchvision`` fails with
  "operator torchvision::nms does not exist" when it registers their fake (meta) kernels.
  The model classes are pure Python: :func:`import_torchvision` replaces
  ``torch.library.register_fake`` during the import by a wrapper that skips the kernels of
  operators that do not exist, then restores it.  ``torchvision.models`` then work;
  ``torchvision.ops`` (nms, roi_align, ...) do not, and nothing here uses them.
* torchvision is missing: the stand-in of ``stubs/`` (two placeholder classes, enough for
  zennit's import) is put on ``sys.path``.

This module imports torch only when torchvision is installed, so ``conftest.py`` can call it
in an environment without torch (``make test``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

STUBS = Path(__file__).resolve().parent / "stubs"

#: the operators whose fake kernels were skipped by the last tolerant import (for the record)
SKIPPED: list[str] = []


def _missing_operator(exc: RuntimeError) -> bool:
    return "does not exist" in str(exc)


def _tolerant(register_fake: Callable[..., Any]) -> Callable[..., Any]:
    """``register_fake`` that skips operators that do not exist (decorator and direct forms)."""

    def wrapper(op: Any, func: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
        if func is not None:  # direct form: register_fake(op, func)
            try:
                return register_fake(op, func, **kwargs)
            except RuntimeError as exc:
                if not _missing_operator(exc):
                    raise
                SKIPPED.append(str(op))
                return func
        try:  # decorator form: register_fake(op)(func)
            decorator = register_fake(op, **kwargs)
        except RuntimeError as exc:
            if not _missing_operator(exc):
                raise
            SKIPPED.append(str(op))
            return lambda fn: fn

        def tolerant_decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            try:
                return decorator(fn)  # type: ignore[no-any-return]
            except RuntimeError as exc:
                if not _missing_operator(exc):
                    raise
                SKIPPED.append(str(op))
                return fn

        return tolerant_decorator

    return wrapper


def import_torchvision() -> ModuleType | None:
    """The real torchvision, imported tolerantly, if installed; else None with the stand-in on ``sys.path``."""
    if "torchvision" in sys.modules:
        module = sys.modules["torchvision"]
        return None if str(STUBS) in str(getattr(module, "__file__", "")) else module
    spec = importlib.util.find_spec("torchvision")
    if spec is None or str(STUBS) in str(spec.origin):
        if str(STUBS) not in sys.path:
            sys.path.insert(0, str(STUBS))
        return None
    import torch.library

    original = torch.library.register_fake
    torch.library.register_fake = _tolerant(original)  # type: ignore[assignment]
    try:
        return importlib.import_module("torchvision")
    finally:
        torch.library.register_fake = original  # type: ignore[assignment]
