"""Find the files that belong together: ``<stem>_labels.*``, ``<stem>_fused.*``, statistics.

The pipeline writes, per series, the segmentation as produced (``<stem>_labels.<ext>``,
never edited) and the working copy with the intensity (``<stem>_fused.<ext>``), in one or
more formats. Opening either finds its partner. When fused copies exist in several
formats, the fastest to reload wins: ``.ng5d``, then ``.ome.zarr``, then ``.tif``; a
warning says so when another copy is newer (it may hold edits the chosen one lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: fused / labels file suffixes in reload-speed order
FORMAT_ORDER: tuple[str, ...] = (".ng5d", ".ome.zarr", ".ome.tif", ".ome.tiff", ".tif",
                                 ".tiff")


@dataclass
class Pair:
    """The files of one series.

    Attributes
    ----------
    stem : str
        Series name.
    folder : Path
        Where the files are.
    fused : Path or None
        The working copy to open (fastest format present).
    fused_all : list of Path
        Every fused copy present, in reload-speed order.
    labels : Path or None
        The segmentation as produced (fastest format present), for "restore".
    stats : Path or None
        ``<stem>_labelStats.csv`` when present.
    warnings : list of str
        Things the user should know (e.g. a newer copy in a slower format).
    """

    stem: str
    folder: Path
    fused: Path | None = None
    fused_all: list[Path] = field(default_factory=list)
    labels: Path | None = None
    stats: Path | None = None
    warnings: list[str] = field(default_factory=list)


def split_name(path: Path) -> tuple[str, str, str] | None:
    """``(stem, role, suffix)`` of ``<stem>_fused.<ext>`` / ``<stem>_labels.<ext>``, else None."""
    name = path.name
    low = name.lower()
    for suf in FORMAT_ORDER:
        if low.endswith(suf):
            base = name[: -len(suf)]
            for role in ("_fused", "_labels"):
                if base.endswith(role):
                    return base[: -len(role)], role[1:], suf
            return None
    return None


def find_pair(path: str | Path) -> Pair | None:
    """The series ``path`` belongs to, or None when it is not one of our outputs."""
    p = Path(path)
    parts = split_name(p)
    if parts is None:
        return None
    stem, _role, _suf = parts
    folder = p.parent
    pair = Pair(stem, folder)
    for suf in FORMAT_ORDER:
        f = folder / f"{stem}_fused{suf}"
        if f.exists():
            pair.fused_all.append(f)
        lab = folder / f"{stem}_labels{suf}"
        if pair.labels is None and lab.exists():
            pair.labels = lab
    if pair.fused_all:
        pair.fused = pair.fused_all[0]
        chosen = pair.fused.stat().st_mtime
        for other in pair.fused_all[1:]:
            if other.stat().st_mtime > chosen + 1:
                pair.warnings.append(
                    f"{other.name} is newer than {pair.fused.name}; opening {pair.fused.name} "
                    "(the fastest to reload) — the copies may differ")
    stats = folder / f"{stem}_labelStats.csv"
    if stats.exists():
        pair.stats = stats
    return pair
