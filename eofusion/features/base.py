"""Plug-in model for patch descriptors.

Modelled on titiler's ``titiler.core.algorithm.base``: every descriptor is a small typed
class carrying its metadata (``name``, ``sensor``, ``dim``, ``version``) and a single
entry point turning a patch into a fixed-length float32 vector. Descriptors are collected
in a :class:`DescriptorRegistry` so the ingest pipeline and the API can look them up by
name (e.g. the ``descriptor`` column stored next to each pgvector embedding).
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

Sensor = Literal["s1", "s2", "fused"]
"""Which sensor a descriptor consumes: Sentinel-1, Sentinel-2, or both (early fusion)."""

FloatArray = NDArray[np.floating[Any]]
"""Input pixel arrays: any float dtype (float32 from rasterio, float64 from arithmetic)."""

Vector = NDArray[np.float32]
"""Output descriptors are float32: it is what pgvector stores and halves memory."""


class Descriptor(abc.ABC):
    """Abstract patch descriptor.

    Subclasses set the class-level metadata ``name``, ``sensor`` and ``version`` and implement
    :meth:`batch` (vectorised over patches) plus the ``dim`` and ``input_nbands`` properties.
    :meth:`__call__` is derived from :meth:`batch` so the single-patch and the batched paths can
    never disagree.

    Attributes:
        name: Registry key, also stored with every vector so vectors of different kinds are never
            compared with each other.
        sensor: ``"s1"``, ``"s2"`` or ``"fused"``.
        version: Bumped whenever the output of the descriptor changes for the same input, so
            stored vectors can be recomputed.
    """

    name: ClassVar[str]
    sensor: ClassVar[Sensor]
    version: ClassVar[str]

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of the output vector."""

    @property
    @abc.abstractmethod
    def input_nbands(self) -> int:
        """Number of bands expected on the band axis of a patch."""

    @abc.abstractmethod
    def batch(self, patches: FloatArray) -> Vector:
        """Describe a stack of patches at once.

        Args:
            patches: Array of shape ``(n, bands, h, w)``.

        Returns:
            Array of shape ``(n, dim)``, dtype float32.

        Raises:
            ValueError: If the shape is wrong or a patch has no valid pixel.
        """

    def __call__(self, patch: FloatArray) -> Vector:
        """Describe one patch.

        Args:
            patch: Array of shape ``(bands, h, w)``; a single-band descriptor also accepts ``(h, w)``.

        Returns:
            Vector of shape ``(dim,)``, dtype float32.

        Raises:
            ValueError: If the shape is wrong or the patch has no valid pixel.
        """
        arr = np.asarray(patch)
        if arr.ndim == 2 and self.input_nbands == 1:
            arr = arr[np.newaxis]
        if arr.ndim != 3:
            raise ValueError(f"{self.name}: expected a patch of shape (bands, h, w), got shape {arr.shape}")
        return self.batch(arr[np.newaxis])[0]

    def _check_batch(self, patches: FloatArray, min_bands: int | None = None) -> NDArray[np.float64]:
        """Validate a ``(n, bands, h, w)`` stack and return it as float64.

        float64 is used internally so that ratios of local sums are reproducible to ~1e-12,
        which is what makes the histograms exactly scale invariant in practice.
        """
        arr = np.asarray(patches)
        if arr.ndim != 4:
            raise ValueError(f"{self.name}: expected patches of shape (n, bands, h, w), got shape {arr.shape}")
        need = self.input_nbands if min_bands is None else min_bands
        if arr.shape[1] < need:
            raise ValueError(f"{self.name}: expected at least {need} band(s), got {arr.shape[1]}")
        if arr.shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch")
        return arr.astype(np.float64, copy=False)

    def metadata(self) -> dict[str, Any]:
        """Return the descriptor metadata as a JSON-serialisable dict (for the API / STAC ``mlm``)."""
        return {
            "name": self.name,
            "sensor": self.sensor,
            "dim": self.dim,
            "version": self.version,
            "input_nbands": self.input_nbands,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, version={self.version!r})"


class UnknownDescriptorError(KeyError, ValueError):
    """Raised when a descriptor name is not registered.

    Subclasses both ``KeyError`` (dict-like lookup) and ``ValueError`` (bad user input, e.g. a
    query parameter) so callers can catch whichever is natural for them.
    """

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class DescriptorRegistry:
    """Dict-like collection of descriptor instances keyed by their ``name``."""

    def __init__(self, descriptors: dict[str, Descriptor] | None = None) -> None:
        """Create a registry.

        Args:
            descriptors: Optional initial mapping of name to descriptor.
        """
        self._items: dict[str, Descriptor] = {}
        for key, descriptor in (descriptors or {}).items():
            self.register(descriptor, name=key)

    def register(self, descriptor: Descriptor, *, name: str | None = None, overwrite: bool = False) -> Descriptor:
        """Add a descriptor.

        Args:
            descriptor: The descriptor instance.
            name: Key to register under; defaults to ``descriptor.name``.
            overwrite: Replace an existing entry instead of raising.

        Returns:
            The registered descriptor (handy for chaining).

        Raises:
            TypeError: If ``descriptor`` is not a :class:`Descriptor`.
            ValueError: If the name is taken and ``overwrite`` is false.
        """
        if not isinstance(descriptor, Descriptor):
            raise TypeError(f"expected a Descriptor instance, got {type(descriptor).__name__}")
        key = name or descriptor.name
        if key in self._items and not overwrite:
            raise ValueError(f"descriptor {key!r} is already registered (use overwrite=True)")
        self._items[key] = descriptor
        return descriptor

    def get(self, name: str) -> Descriptor:
        """Look a descriptor up by name.

        Args:
            name: Registered name, e.g. ``"wld"``.

        Returns:
            The descriptor.

        Raises:
            UnknownDescriptorError: (a ``KeyError`` and ``ValueError``) naming the unknown kind and
                listing the known ones.
        """
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.list()) or "(none)"
            raise UnknownDescriptorError(f"unknown descriptor {name!r}; known descriptors: {known}") from None

    def list(self) -> builtins.list[str]:
        """Return the registered names, sorted."""
        return sorted(self._items)

    def __getitem__(self, name: str) -> Descriptor:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"DescriptorRegistry({self.list()})"
