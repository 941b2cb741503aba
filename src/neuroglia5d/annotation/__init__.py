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
from .session import (
    TOPOLOGY4D_COLUMNS,
    TOPOLOGY_COLUMNS,
    dynamics_table,
    interactive_png,
    live_stats,
    merged_topology,
    refresh_stats_table,
    save_session,
    topology_table,
)
from .working_copy import WorkingCopy

__all__ = [
    "OP_TYPES",
    "SCHEMA_VERSION",
    "TOPOLOGY4D_COLUMNS",
    "TOPOLOGY_COLUMNS",
    "Journal",
    "Operation",
    "WorkingCopy",
    "annotations_document",
    "decode_array",
    "dynamics_table",
    "encode_array",
    "interactive_png",
    "live_stats",
    "load_annotations",
    "make_header",
    "merged_topology",
    "ops_from_document",
    "pending_operations",
    "read_journal",
    "refresh_stats_table",
    "replay",
    "save_annotations",
    "save_session",
    "topology_table",
    "validate_annotations",
    "validate_operation",
]
