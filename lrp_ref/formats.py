"""Which loader reads which model file: :func:`load_any`, the one place that maps a file to its importer.

``lrp-ref info``, ``explain``, ``compare`` and every other command taking
``--model``, and ``lrp-ref convert``, open models through :func:`load_any`.
A file is matched against :data:`FORMATS` in order: the first format whose
suffixes include the file's and whose ``claims`` (if any) accepts its
content reads it.

==============  =============  =================================  ======================
format          suffixes       loader                             extra to install
==============  =============  =================================  ======================
lrp_ref HDF5    .h5, .hdf5     :func:`lrp_ref.load`               --
ONNX            .onnx          :func:`lrp_ref.from_onnx`          ``lrp_ref[onnx]``
==============  =============  =================================  ======================

To add a format, add one :class:`Format` to :data:`FORMATS` (before the
lrp_ref HDF5 entry when it shares a suffix with it, with a ``claims``
function that recognises its files, e.g. a Keras ``.h5`` by its
``model_config`` attribute).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFormatError
from .graph import Graph

__all__ = ["FORMATS", "Format", "format_of", "load_any"]


@dataclass(frozen=True)
class Format:
    """One model file format and the function that reads it.

    Parameters
    ----------
    name : str
        For messages, e.g. ``"ONNX"``.
    suffixes : tuple of str
        Lower-case file suffixes, with the dot.
    loader : str
        ``"module:function"``, imported only when a file of this format is read
        (so that optional dependencies stay optional); the function takes the path.
    extra : str
        The pip extra that provides the loader's dependencies ("" if none).
    claims : callable (Path -> bool), optional
        For a suffix several formats share: whether this file is of this format.
    """

    name: str
    suffixes: tuple[str, ...]
    loader: str
    extra: str = ""
    claims: Callable[[Path], bool] | None = None

    def load(self, path: Path) -> Graph:
        module, function = self.loader.split(":")
        try:
            read = getattr(importlib.import_module(module), function)
        except ImportError as exc:
            hint = f" (pip install 'lrp_ref[{self.extra}]')" if self.extra else ""
            raise ImportError(f"reading {self.name} files needs {exc.name or module}{hint}") from None
        model = read(path)
        if not isinstance(model, Graph):  # pragma: no cover - a loader's bug
            raise TypeError(f"{self.loader} returned {type(model).__name__}, not a model")
        return model


#: The formats :func:`load_any` knows, tried in order.
FORMATS: list[Format] = [
    Format("ONNX", (".onnx",), "lrp_ref.onnx:from_onnx", "onnx"),
    Format("lrp_ref HDF5", (".h5", ".hdf5"), "lrp_ref.io:load"),
]


def format_of(path: Any) -> Format:
    """The :class:`Format` of the file at ``path`` (by suffix, then content); ModelFormatError if none."""
    p = Path(path)
    suffix = p.suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes and (fmt.claims is None or fmt.claims(p)):
            return fmt
    known = ", ".join(f"{s} ({fmt.name})" for fmt in FORMATS for s in fmt.suffixes)
    raise ModelFormatError(f"{p}: no model format has the suffix {suffix or '(none)'!r}; known: {known}")


def load_any(path: Any) -> Graph:
    """The model in the file at ``path``, read by the loader of its format (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ModelFormatError
        If no format has its suffix, or its loader refuses it.
    ImportError
        If the format's optional dependency is missing (the message names the extra).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such model file: {str(p)!r}")
    return format_of(p).load(p)
