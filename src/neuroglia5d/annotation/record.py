"""Recording: the journal (``<stem>_auto_annotations.jsonl``), the annotations document
(``<stem>_auto_annotations.json``), its schema check, and replay.

The journal gets one JSON op per line as each op is applied (flushed and fsync'd, so a
crash loses nothing); Ctrl+S writes the document: ``{"schema_version", "header",
"operations"}``. ``docs/annotations.schema.json`` (shipped as package data too) is the
schema; :func:`validate_annotations` checks a document against it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError
from ..io.atomic import atomic_write_text
from .operation import Operation, now_iso

SCHEMA_VERSION = "1.0"
_SCHEMA_NAME = "annotations.schema.json"


class Journal:
    """Append-only journal of operations, one JSON object per line.

    Parameters
    ----------
    path : str or Path
        ``<stem>_auto_annotations.jsonl``; created if missing, appended to otherwise.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise InputError(f"{self.path}: cannot open the journal ({e.strerror or e})") \
                from None

    def append(self, op: Operation) -> None:
        """Write ``op`` as one line, flush and fsync."""
        self._f.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The ops of a journal; a torn last line (crash mid-write) is ignored."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise InputError(f"{p}: line {i + 1} is not JSON") from None
    return out


def pending_operations(journal_path: str | Path,
                       annotations: str | Path | Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Ops in the journal after the last save (to offer for replay on reopening).

    Parameters
    ----------
    journal_path : str or Path
        The ``.jsonl`` journal.
    annotations : str, Path, dict or None
        The last saved document (or its path); None: every journaled op is pending.
    """
    ops = read_journal(journal_path)
    if annotations is None:
        return ops
    doc = annotations if isinstance(annotations, Mapping) else load_annotations(annotations)
    last = max((int(o.get("created_idx", -1)) for o in doc["operations"]), default=-1)
    return [o for o in ops if int(o.get("created_idx", -1)) > last]


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_entry(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a data file (sha256 None for folders).

    Hashes are cached by (path, size, mtime) so repeated saves do not re-read big files.
    """
    p = Path(path)
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return {"path": str(p), "sha256": None, "bytes": size}
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        digest = _HASH_CACHE[key] = h.hexdigest()
    return {"path": str(p), "sha256": digest, "bytes": st.st_size}


def make_header(wc: Any, files: Mapping[str, str | Path] | None = None,
                **extra: Any) -> dict[str, Any]:
    """The document header for a working copy.

    Parameters
    ----------
    wc : WorkingCopy
        Gives shape, dtype, voxel size and crop offset.
    files : mapping of str to path, optional
        Data files by role (``labels``, ``fused``, ...), hashed with SHA-256.
    **extra
        More header entries (``stem``, ``software``, ...).
    """
    from .._version import __version__

    h: dict[str, Any] = {
        "software": f"neuroglia5d {__version__}",
        "created": now_iso(),
        "shape": [int(v) for v in wc.shape],
        "dtype": str(wc.labels.dtype),
        "spacing_um": [float(v) for v in wc.spacing_um],
        "offset_zyx": [int(v) for v in wc.offset_zyx],
        "next_id": int(wc.next_id),
        "files": {k: file_entry(v) for k, v in (files or {}).items()},
    }
    h.update(extra)
    return h


def annotations_document(wc: Any, header: Mapping[str, Any]) -> dict[str, Any]:
    """The annotations document of ``wc`` (header + every recorded op)."""
    h = dict(header)
    h["next_id"] = int(wc.next_id)
    return {"schema_version": SCHEMA_VERSION, "header": h,
            "operations": [op.to_json() for op in wc.operations]}


def save_annotations(path: str | Path, wc: Any, header: Mapping[str, Any]) -> Path:
    """Write ``<stem>_auto_annotations.json`` atomically (validated against the schema)."""
    doc = annotations_document(wc, header)
    validate_annotations(doc)
    return atomic_write_text(Path(path), json.dumps(doc, indent=1) + "\n")


def load_annotations(path: str | Path, *, validate: bool = True) -> dict[str, Any]:
    """Read and (by default) validate an annotations document."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a JSON annotations file ({e})") from None
    if validate:
        try:
            validate_annotations(doc)
        except ParameterError as e:
            raise InputError(f"{p}: {e}") from None
    return doc


def schema() -> dict[str, Any]:
    """The JSON Schema of the annotations document (``docs/annotations.schema.json``)."""
    here = Path(__file__).parent / _SCHEMA_NAME
    if not here.exists():  # source checkout: docs/ at the repository root
        here = Path(__file__).resolve().parents[3] / "docs" / _SCHEMA_NAME
    result: dict[str, Any] = json.loads(here.read_text(encoding="utf-8"))
    return result


def validate_annotations(doc: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` (one line) when ``doc`` does not match the schema."""
    import jsonschema

    v = jsonschema.Draft202012Validator(schema())
    err = jsonschema.exceptions.best_match(v.iter_errors(doc))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(document)"
        raise ParameterError(f"annotations {where}: {err.message}")


def validate_operation(op: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` when one op (a journal line) does not match."""
    import jsonschema

    s = schema()
    sub = {"$schema": s.get("$schema"), "$defs": s["$defs"], "$ref": "#/$defs/operation"}
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(sub).iter_errors(op))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path)
        raise ParameterError(f"operation {where}: {err.message}".replace(" :", ":"))


def replay(annotations: str | Path | Mapping[str, Any], labels: Any, *,
           original: Any = None, upto: int | None = None) -> np.ndarray:
    """Apply the recorded operations to a copy of the original labels.

    Parameters
    ----------
    annotations : str, Path or dict
        The annotations document (or its path).
    labels : array-like
        (T, Z, Y, X) labels of the segmentation (``<stem>_labels``), or (Z, Y, X) for a
        single timepoint; not modified.
    original : array-like, optional
        Original labels for ``restore`` ops (default: ``labels``).
    upto : int, optional
        Stop after the op with this ``created_idx``.

    Returns
    -------
    numpy.ndarray
        The working labels, bit for bit as saved.

    Raises
    ------
    InputError
        The labels do not match the header's shape, or an op cannot be applied.
    """
    from .working_copy import WorkingCopy

    doc = annotations if isinstance(annotations, Mapping) else load_annotations(annotations)
    src = np.asarray(labels)
    squeeze = src.ndim == 3
    if squeeze:
        src = src[None]
    head = doc.get("header", {})
    shape = head.get("shape")
    if shape is not None and list(src.shape) != list(shape):
        raise InputError(f"labels: shape {list(src.shape)} differs from the annotations' "
                         f"{list(shape)}")
    dtype = np.dtype(head.get("dtype", src.dtype))
    work = src.astype(dtype, copy=True)
    orig = src if original is None else original
    wc = WorkingCopy(work, original=orig, spacing_um=head.get("spacing_um", (1, 1, 1)),
                     offset_zyx=head.get("offset_zyx", (0, 0, 0)))
    for d in doc["operations"]:
        op = Operation.from_json(d)
        try:
            wc.apply(op)
        except ParameterError as e:
            raise InputError(f"op {op.created_idx} ({op.type}): {e}") from None
        if upto is not None and op.created_idx >= upto:
            break
    return work[0] if squeeze else work


def ops_from_document(doc: Mapping[str, Any]) -> list[Operation]:
    """The document's ops as :class:`Operation` objects (e.g. ``prior`` of a new session)."""
    return [Operation.from_json(d) for d in doc["operations"]]

