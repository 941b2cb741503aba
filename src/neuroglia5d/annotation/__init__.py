"""Label correction core: the working copy, its recorded operations, replay, live
statistics and the files Ctrl+S writes. Pure numpy/scipy/scikit-image (no Qt/napari).

See ``docs/annotations.schema.json`` for the recorded format.
"""

from __future__ import annotations

from .operation import OP_TYPES, Operation, decode_array, encode_array
from .record import (
    SCHEMA_VERSION,
    Journal,
    annotations_document,
    load_annotations,
    make_header,
    ops_from_document,
    pending_operations,
    read_journal,
    replay,
    save_annotations,
    validate_annotations,
    validate_operation,
)
from .working_copy import WorkingCopy

__all__ = [
    "OP_TYPES",
    "SCHEMA_VERSION",
    "Journal",
    "Operation",
    "WorkingCopy",
    "annotations_document",
    "decode_array",
    "encode_array",
    "load_annotations",
    "make_header",
    "ops_from_document",
    "pending_operations",
    "read_journal",
    "replay",
    "save_annotations",
    "validate_annotations",
    "validate_operation",
]
