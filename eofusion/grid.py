"""Coarse-to-fine patch grids over a scene (pure numpy).

A level is a patch size in pixels. Cells are aligned on the scene's top-left corner; partial
cells at the right and bottom edges are left out so every patch has the full size. A cell's
parent is the cell of the next coarser level that contains its centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Cell:
    """One patch of one level."""

    level: int
    row: int
    col: int
    parent: tuple[int, int, int] | None  # (level, row, col) of the containing coarser cell
    valid_fraction: float

    @property
    def window(self) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) in scene pixels."""
        return self.row * self.level, self.col * self.level, self.level, self.level


def patch_id(scene_id: str, level: int, row: int, col: int) -> str:
    """Stable patch identifier: the same scene, level and cell always give the same id."""
    return f"{scene_id}_L{level}_r{row:04d}_c{col:04d}"


def valid_fractions(valid: NDArray[np.bool_], level: int) -> NDArray[np.float64]:
    """Fraction of valid pixels of every full cell of a level, shape (rows, cols)."""
    h, w = valid.shape
    rows, cols = h // level, w // level
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols))
    block = valid[: rows * level, : cols * level].reshape(rows, level, cols, level)
    return block.mean(axis=(1, 3))


def cut_grid(valid: NDArray[np.bool_], levels: Sequence[int], min_valid: float = 0.5) -> list[Cell]:
    """Cells of every level (coarse to fine) holding at least ``min_valid`` valid pixels.

    Args:
        valid: Pixel validity mask of the scene (True where there is data).
        levels: Patch sizes in pixels, e.g. (480, 240, 120); sorted coarse to fine here.
        min_valid: Cells with a smaller fraction of valid pixels are dropped.

    Raises:
        ValueError: a level is not positive, or larger than the scene.
    """
    order = sorted({int(lv) for lv in levels}, reverse=True)
    if not order or order[-1] <= 0:
        raise ValueError(f"grid levels must be positive pixel sizes, got {list(levels)}")
    h, w = valid.shape
    if order[-1] > min(h, w):
        raise ValueError(f"the finest level ({order[-1]} px) is larger than the scene ({h}x{w} px)")
    cells: list[Cell] = []
    for i, level in enumerate(order):
        frac = valid_fractions(valid, level)
        coarser = order[i - 1] if i > 0 else None
        rows, cols = np.nonzero(frac >= min_valid)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            parent = None
            if coarser is not None:
                pr, pc = (r * level + level // 2) // coarser, (c * level + level // 2) // coarser
                if pr < h // coarser and pc < w // coarser:
                    parent = (coarser, pr, pc)
            cells.append(Cell(level, r, c, parent, float(frac[r, c])))
    return cells
