"""Tiling of the 4D region of interest so that the working copy fits the memory budget.

As in the manual's step B4: the ROI is the tightest box holding labels over every z and
every t (from the per-label bounding boxes of ``*_labelStats.csv``). Each voxel costs 6
bytes (uint16 intensity + uint32 labels). When ROI width × height × depth × T exceeds the
budget (GPU memory on a GPU, else a RAM budget), the ROI is split in X and Y only — every
tile keeps the whole Z and T, so tracking and 4D rendering see whole objects over time —
into a grid of tiles that overlap by 15 %. Label IDs stay global; a tile only limits what
is decoded and shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BYTES_PER_VOXEL = 6
OVERLAP = 0.15


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: a (y, x) box of the working copy, full Z and T.

    Attributes
    ----------
    row, col : int
        Position in the grid.
    y0, y1, x0, x1 : int
        Half-open bounds in voxels of the working copy (not the raw frame).
    """

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """(y, x) slices of the tile."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) in voxels."""
        return self.y1 - self.y0, self.x1 - self.x0


@dataclass(frozen=True)
class TileGrid:
    """Tiles covering the ROI.

    Attributes
    ----------
    roi : tuple of int
        ``(y0, y1, x0, x1)`` of the region of interest in the working copy.
    tiles : tuple of Tile
        Row-major.
    rows, cols : int
        Grid size.
    depth, timepoints : int
        Z and T of every tile.
    budget_bytes : int
        The memory budget the grid was made for.
    """

    roi: tuple[int, int, int, int]
    tiles: tuple[Tile, ...]
    rows: int
    cols: int
    depth: int
    timepoints: int
    budget_bytes: int

    def tile_bytes(self, tile: Tile) -> int:
        """Memory of one tile at 6 bytes per voxel."""
        h, w = tile.shape_yx
        return h * w * self.depth * self.timepoints * BYTES_PER_VOXEL

    def at(self, row: int, col: int) -> Tile:
        """The tile at a grid position."""
        return self.tiles[row * self.cols + col]


def roi_from_stats(bboxes: np.ndarray, shape_yx: Sequence[int],
                   offset_yx: Sequence[int] = (0, 0)) -> tuple[int, int, int, int]:
    """Tightest (y0, y1, x0, x1) holding every label box, in working-copy coordinates.

    Parameters
    ----------
    bboxes : numpy.ndarray
        (n, 4) rows of ``bbox_y0, bbox_y1, bbox_x0, bbox_x1`` from ``*_labelStats.csv``
        (raw-frame voxels, half-open).
    shape_yx : sequence of int
        (Y, X) of the working copy.
    offset_yx : sequence of int
        The working copy's crop offset in the raw frame.
    """
    Y, X = (int(v) for v in shape_yx)
    if len(bboxes) == 0:
        return 0, Y, 0, X
    b = np.asarray(bboxes, dtype=np.int64)
    oy, ox = (int(v) for v in offset_yx)
    y0 = max(0, int(b[:, 0].min()) - oy)
    y1 = min(Y, int(b[:, 1].max()) - oy)
    x0 = max(0, int(b[:, 2].min()) - ox)
    x1 = min(X, int(b[:, 3].max()) - ox)
    if y1 <= y0 or x1 <= x0:
        return 0, Y, 0, X
    return y0, y1, x0, x1


def make_grid(roi: tuple[int, int, int, int], depth: int, timepoints: int,
              budget_bytes: int, overlap: float = OVERLAP) -> TileGrid:
    """Split the ROI in X and Y into the fewest, most square tiles that fit the budget.

    Tiles overlap by ``overlap`` of their size; every tile fits ``budget_bytes`` at 6 bytes
    per voxel (a single tile when the whole ROI fits).

    Raises
    ------
    ValueError
        When even a 16×16 tile of full Z and T does not fit the budget.
    """
    y0, y1, x0, x1 = roi
    H, W = y1 - y0, x1 - x0
    per_yx = depth * timepoints * BYTES_PER_VOXEL
    if 16 * 16 * per_yx > budget_bytes:
        raise ValueError(f"memory budget {budget_bytes / 2**20:.0f} MiB is too small for "
                         f"even a 16x16 tile of {depth} planes x {timepoints} timepoints")
    best: tuple[int, int] | None = None
    for n in range(1, 4096):
        for rows in range(1, n + 1):
            if n % rows:
                continue
            cols = n // rows
            th = _tile_len(H, rows, overlap)
            tw = _tile_len(W, cols, overlap)
            if th * tw * per_yx <= budget_bytes:
                cand = (rows, cols)
                if best is None or abs(th - tw) < abs(_tile_len(H, best[0], overlap)
                                                      - _tile_len(W, best[1], overlap)):
                    best = cand
        if best is not None:
            break
    assert best is not None
    rows, cols = best
    ys = _starts(y0, H, rows, overlap)
    xs = _starts(x0, W, cols, overlap)
    th, tw = _tile_len(H, rows, overlap), _tile_len(W, cols, overlap)
    tiles = tuple(Tile(r, c, ys[r], min(y1, ys[r] + th), xs[c], min(x1, xs[c] + tw))
                  for r in range(rows) for c in range(cols))
    return TileGrid(roi, tiles, rows, cols, depth, timepoints, budget_bytes)


def _tile_len(total: int, n: int, overlap: float) -> int:
    """Length of n tiles covering ``total`` with the given fractional overlap."""
    if n == 1:
        return total
    return math.ceil(total / (n - (n - 1) * overlap))


def _starts(origin: int, total: int, n: int, overlap: float) -> list[int]:
    if n == 1:
        return [origin]
    length = _tile_len(total, n, overlap)
    step = (total - length) / (n - 1)
    return [origin + round(i * step) for i in range(n)]


def memory_budget_bytes(device: str = "cpu", ram_budget_gb: float = 0.0) -> int:
    """Budget for the active tile: free GPU memory on a GPU, else the RAM budget (half of
    the available memory when ``ram_budget_gb`` is 0)."""
    if device == "gpu":
        from .backend import gpu_memory_bytes

        mem = gpu_memory_bytes()
        if mem is not None:
            return int(mem[0] * 0.8)
    if ram_budget_gb > 0:
        return int(ram_budget_gb * 2**30)
    import psutil

    return int(psutil.virtual_memory().available * 0.5)
