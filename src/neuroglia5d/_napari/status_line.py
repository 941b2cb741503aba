"""A one-line status display that repaints without re-laying out its window.

A ``QLabel`` asks its parent layout for a new geometry on every ``setText`` (its size
hint may have changed); in a napari dock that re-lays out the main window and, with it,
re-renders the canvas. :class:`StatusLine` has a fixed height and a constant size hint,
so a new message costs one repaint of the line itself.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget


class StatusLine(QWidget):
    """Elided single line of text (the full text is its tool tip).

    Parameters
    ----------
    color : str
        Text colour (any name or ``#rgb`` Qt accepts).
    """

    def __init__(self, color: str = "#3c3", parent: Any = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._color = QColor(color)
        h = self.fontMetrics().height() + 6
        self.setFixedHeight(h)
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        """The message shown."""
        return self._text

    def setText(self, text: str) -> None:
        """Show ``text``: a repaint of this line only."""
        if text == self._text:
            return
        self._text = text
        self.setToolTip(text)
        self.update()

    def sizeHint(self) -> QSize:
        """Constant: a new message never changes the layout."""
        return QSize(200, self.height())

    def paintEvent(self, event: Any) -> None:
        """Draw the text, elided at the right when it is wider than the line."""
        p = QPainter(self)
        try:
            p.setPen(self._color)
            fm = self.fontMetrics()
            shown = fm.elidedText(self._text, Qt.TextElideMode.ElideRight, self.width() - 4)
            p.drawText(self.rect().adjusted(2, 0, -2, 0),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), shown)
        finally:
            p.end()
