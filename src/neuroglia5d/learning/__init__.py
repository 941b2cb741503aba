"""Learning from corrections: networks trained on the user's edits fix the same kinds of
errors across the rest of the data set (artefact, merge, split, tracking), with a meta
network that schedules their training.

Core modules are free of Qt/napari; ``torch`` is imported lazily.
"""

from __future__ import annotations

__all__: list[str] = []
