"""Journal side of the annotation dock: the last saved session, replay or discard of the
journal's unsaved operations, and saving (working copy, annotations, topology).

:class:`SessionMixin` is mixed into :class:`~.annotation_dock.AnnotationDock`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SessionMixin:
    """Journal replay / discard and saving of the annotation dock."""

    # provided by the dock
    wc: Any
    view: Any
    layer: Any
    viewer: Any
    folder: Path
    stem: str
    journal_path: Path
    annotations_path: Path
    pending: list[dict[str, Any]]
    replay_box: Any
    message: Any
    _apply: Any
    _mark_reviewed: Any
    current_t: Any

    def _saved_session(self) -> tuple[list[Any], int | None, dict[str, Any] | None]:
        """Operations, next ID and document of the last save (``_auto_annotations.json``)."""
        from ..annotation import load_annotations, ops_from_document
        from ..errors import Neuroglia5DError

        if not self.annotations_path.exists():
            return [], None, None
        try:
            doc = load_annotations(self.annotations_path)
        except Neuroglia5DError as e:
            self.message(f"previous annotations not read: {e}")
            return [], None, None
        return ops_from_document(doc), doc.get("header", {}).get("next_id"), doc

    def replay_pending(self) -> int:
        """Apply the journal's operations made after the last save to the working copy.

        Returns the number of edits replayed (reviews are re-recorded, not counted).
        """
        from ..annotation import Operation

        n = 0
        for d in self.pending:
            op = Operation.from_json(d)
            res = self._apply(f"replay {op.type}", lambda op=op: self.wc.apply(op),
                              quiet=True)
            n += res is not None and op.type != "review"
        self.pending = []
        self.replay_box.setVisible(False)
        self._mark_reviewed()
        self.message(f"replayed {n} operation(s) from the journal")
        return n

    def discard_pending(self) -> Path | None:
        """Do not replay the journal's unsaved operations.

        The journal is set aside as ``<stem>_auto_annotations.discarded-<stamp>.jsonl``
        (kept for the record) and a fresh one continues, so that a later reopening never
        offers the discarded operations together with newer ones. Returns the set-aside
        file.
        """
        import datetime as _dt

        from ..annotation import Journal, read_journal

        n = len([o for o in self.pending if o.get("type") != "review"])
        last = max((int(o.get("created_idx", -1)) for o in read_journal(self.journal_path)),
                   default=-1)
        self.pending = []
        self.replay_box.setVisible(False)
        moved = None
        if self.wc is not None:
            if hasattr(self.wc, "_next_idx"):
                # new ops never reuse the discarded ops' created_idx
                self.wc._next_idx = max(self.wc._next_idx, last + 1)
            if self.wc.journal is not None:
                self.wc.journal.close()
            stamp = _dt.datetime.now().strftime("%y%m%d%H%M%S")
            moved = self.folder / f"{self.stem}_auto_annotations.discarded-{stamp}.jsonl"
            if self.journal_path.exists():
                self.journal_path.replace(moved)
            self.wc.journal = Journal(self.journal_path)
        self._mark_reviewed()
        self.message(f"{n} unsaved journal operation(s) not replayed"
                     + (f" (set aside as {moved.name})" if moved is not None else ""))
        return moved

    def save(self) -> list[Path]:
        """Save the working copy (formats already present, else ``.ng5d``) and then the
        annotations, so that the saved document always matches the saved labels."""
        if self.layer is None:
            self.message("save: no working copy attached")
            return []
        from .save_widget import save_working_copy

        exts = (".ng5d", ".ome.zarr", ".ome.tif")
        present = [e for e in exts if (self.folder / f"{self.stem}_fused{e}").exists()]
        written = save_working_copy(self.viewer, self.layer, [] if present else ["ng5d"])
        return written + self.save_annotations()

    def save_annotations(self) -> list[Path]:
        """Write ``<stem>_auto_annotations.json``, the topology CSVs and the pictures."""
        if self.wc is None:
            self.message("save: no working copy attached")
            return []
        from .. import annotation

        t = self.current_t()
        save_session = getattr(annotation, "save_session", None)
        if save_session is not None:
            written = [Path(p) for p in save_session(self.wc, self.folder, self.stem, t=t,
                                                     z_range=self._z_range())]
        else:  # the core's session writer is not there: the annotations document alone
            header = annotation.make_header(self.wc, files=self._data_files(), stem=self.stem)
            written = [annotation.save_annotations(self.annotations_path, self.wc, header)]
        self.message("saved " + ", ".join(p.name for p in written))
        return written

    def _data_files(self) -> dict[str, Path]:
        from ..io.pairing import find_pair

        out: dict[str, Path] = {}
        src = self.view.meta.get("source") if self.view is not None else None
        pair = find_pair(Path(src)) if src else None
        if pair is not None:
            if pair.labels is not None:
                out["labels"] = pair.labels
            if pair.fused is not None:
                out["fused"] = pair.fused
        return out

    def _z_range(self) -> tuple[int, int]:
        Z = int(self.view.whole().shape[1]) if self.view is not None else 1
        return 0, Z - 1


def _first_per_idx(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journal ops without repeats of one ``created_idx`` (a replay appends the replayed
    ops again), in journal order."""
    seen: set[int] = set()
    out = []
    for o in ops:
        k = int(o.get("created_idx", -1))
        if k in seen:
            continue
        seen.add(k)
        out.append(o)
    return out
