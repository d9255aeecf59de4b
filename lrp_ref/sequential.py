"""Sequential: a chain of layers, and the forward sweep that records every activation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._checks import check_dtype, check_int, real_array
from .errors import LayerParameterError, ShapeError
from .layers import Layer

__all__ = ["Sequential"]

Array = NDArray[Any]


@dataclass(frozen=True, eq=False, repr=False)
class Sequential:
    """A feed-forward chain of layers.

    Parameters
    ----------
    layers : sequence of :class:`~lrp_ref.layers.Layer`
        Applied in order; all must share one dtype.
    metadata : mapping, optional
        Free-form facts about the model (input shape, class names,
        preprocessing, provenance) kept by :func:`lrp_ref.save`.
    """

    layers: Sequence[Layer]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.layers, (Layer, str, bytes)) or not isinstance(self.layers, Iterable):
            raise LayerParameterError(f"Sequential layers must be a list of lrp_ref layers; got "
                                      f"{type(self.layers).__name__}")
        if not isinstance(self.metadata, Mapping):
            raise LayerParameterError(f"Sequential metadata must be a mapping (a dict); got "
                                      f"{type(self.metadata).__name__}")
        layers = tuple(self.layers)
        if not layers:
            raise LayerParameterError("Sequential layers: needs at least one layer; got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise LayerParameterError(f"Sequential layers[{i}] must be an lrp_ref layer; "
                                          f"got {type(layer).__name__}")
        dtypes = {layer.dtype for layer in layers}
        if len(dtypes) != 1:
            found = ", ".join(f"{i}: {layer.dtype}" for i, layer in enumerate(layers))
            raise LayerParameterError(f"all layers must share one dtype; found {found}. Use model.astype(dtype)")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of every parameter and of the computation."""
        return self.layers[0].dtype

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def astype(self, dtype: DTypeLike) -> Sequential:
        """A copy whose parameters and computation use ``dtype`` (float32 or float64)."""
        dt = check_dtype(dtype)
        return Sequential([layer.astype(dt) for layer in self.layers], self.metadata)

    def n_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(layer.n_parameters() for layer in self.layers)

    def shapes(self, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
        """Per-sample shapes at every layer boundary, starting with ``input_shape``."""
        shapes = [tuple(check_int(n, "input_shape entry", 1, error=ShapeError) for n in input_shape)]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(layer.output_shape(shapes[-1]))
            except ShapeError as exc:
                raise ShapeError(f"layer {i} ({type(layer).__name__}): {exc}") from None
        return shapes

    def forward_all(self, x: Array) -> list[Array]:
        """Activations at every layer boundary: ``[x, a_1, ..., a_L]`` (the forward sweep)."""
        x = real_array(x, "x (the input batch)")
        if x.ndim < 1:
            raise ShapeError(f"x must be a batch of shape (N, ...); got shape {x.shape}")
        self.shapes(x.shape[1:])  # validates every layer before any work is done
        activations = [x]
        for layer in self.layers:
            activations.append(layer.forward(activations[-1]))
        return activations

    def forward(self, x: Array) -> Array:
        """The model output for a batch ``x`` of shape (N, *input_shape)."""
        return self.forward_all(x)[-1]

    def describe(self) -> str:
        """One line per layer."""
        lines = [f"Sequential ({len(self.layers)} layers, {self.n_parameters()} parameters, {self.dtype})"]
        lines += [f"  {i:>2}  {layer.describe()}" for i, layer in enumerate(self.layers)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()
