"""napari menu action: export the current pair to Neuroglancer and open it in the browser.

*File > IO utilities > Open in Neuroglancer (neuroglia5d)* takes the working-copy Labels
layer (the selected one, else the first labels layer carrying our metadata, else the
first labels layer) and its ``<stem> intensity`` Image layer, exports them with
:func:`neuroglia5d.neuroglancer.export.export_arrays` into ``<folder>/<stem>_neuroglancer``
(the series' folder; the current edits are what is exported), serves that folder with the
bundled Neuroglancer client on localhost and opens the first timepoint's view in the
web browser. The export runs in a worker thread; the server lives as long as napari.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Any

import numpy as np
from napari.viewer import Viewer

_SERVERS: dict[str, Any] = {}


def current_pair(viewer: Any) -> tuple[Any, Any | None]:
    """``(labels_layer, image_layer or None)`` to export; raises ValueError if no labels."""
    from napari.layers import Image, Labels

    labels = [ly for ly in viewer.layers if isinstance(ly, Labels)]
    if not labels:
        raise ValueError("no Labels layer to export")
    active = viewer.layers.selection.active
    lab = active if isinstance(active, Labels) else next(
        (ly for ly in labels if "neuroglia5d" in ly.metadata), labels[0])
    meta = lab.metadata.get("neuroglia5d", {})
    stem = meta.get("stem") or lab.name.removesuffix(" labels")
    images = [ly for ly in viewer.layers if isinstance(ly, Image)
              and tuple(ly.data.shape) == tuple(lab.data.shape)]
    img = next((ly for ly in images if ly.name == f"{stem} intensity"),
               images[0] if images else None)
    return lab, img


def export_pair(viewer: Any, out_dir: str | Path | None = None, *,
                progress: Any = None) -> Path:
    """Export the current pair (see the module docstring); returns the export folder."""
    from ..neuroglancer.export import export_arrays

    lab, img = current_pair(viewer)
    meta = lab.metadata.get("neuroglia5d", {})
    stem = str(meta.get("stem") or lab.name.removesuffix(" labels")).replace(" ", "_")
    data = np.asarray(lab.data)
    if data.ndim == 3:
        data = data[np.newaxis]
    intensity = None if img is None else np.asarray(img.data)
    if intensity is not None and intensity.ndim == 3:
        intensity = intensity[np.newaxis]
    spacing = meta.get("spacing_um") or [float(s) for s in lab.scale[-3:]]
    offset = meta.get("offset_zyx") or [0, 0, 0]
    folder = Path(meta.get("folder") or Path.cwd())
    out = Path(out_dir) if out_dir is not None else folder / f"{stem}_neuroglancer"
    table = None
    stats = folder / f"{stem}_labelStats.csv"
    if stats.is_file():
        from ..processing.stats import read_stats_csv

        table = read_stats_csv(stats)
    export_arrays(data, out, intensity=intensity, spacing_um=spacing, offset_zyx=offset,
                  stem=stem, source=str(meta.get("source") or lab.name), stats_table=table,
                  progress=progress)
    return out


def serve_export(export_dir: Path) -> str:
    """Serve the export's parent folder (one server per folder) and return the view URL."""
    from ..neuroglancer.serve import start_server

    root = str(export_dir.parent.resolve())
    s = _SERVERS.get(root)
    if s is None:
        s = _SERVERS[root] = start_server(root, port=0)
    return s.export_url(export_dir)


def stop_servers() -> None:
    """Stop every server this module started."""
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


def open_in_neuroglancer(viewer: Viewer, *, out_dir: str | Path | None = None,
                         open_browser: bool = True, block: bool = False) -> Any:
    """The menu command: export in a worker thread, then serve and open the link.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose pair is exported.
    out_dir : str or Path, optional
        Export folder (default ``<folder>/<stem>_neuroglancer``).
    open_browser : bool
        Open the link in the default web browser.
    block : bool
        Run in the calling thread and return the URL (scripts and tests); otherwise a
        napari thread worker is started and returned.
    """
    from napari.utils.notifications import show_error, show_info

    def job() -> str:
        url = serve_export(export_pair(viewer, out_dir))
        if open_browser:
            webbrowser.open(url)
        return url

    if block:
        return job()
    from napari.qt.threading import create_worker

    worker = create_worker(job, _progress={"desc": "Neuroglancer export"})
    worker.returned.connect(lambda url: show_info(f"Neuroglancer: {url}"))
    worker.errored.connect(lambda e: show_error(f"Neuroglancer export failed: {e}"))
    worker.start()
    return worker
