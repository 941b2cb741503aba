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


class CanvasStatus:
    """A one-line message floating at the bottom left of napari's canvas.

    A Qt label over the canvas widget, not a vispy visual: a new message costs a
    composition of the window, not a redraw of the scene (napari's text overlay rebuilds
    its shader program for every new text, 70-100 ms on software OpenGL), and it never
    appears in ``viewer.screenshot(canvas_only=True)`` pictures made for figures.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose canvas shows the message.
    color : str
        Text colour.
    """

    def __init__(self, viewer: Any, color: str = "#4f4") -> None:
        from qtpy.QtCore import QObject
        from qtpy.QtWidgets import QLabel

        canvas = viewer.window._qt_viewer.canvas.native
        self.canvas = canvas
        self.label = QLabel("", canvas)
        self.label.setObjectName("neuroglia5d_canvas_status")
        self.label.setStyleSheet(f"color: {color}; background: rgba(0, 0, 0, 110); "
                                 "padding: 1px 4px; font-size: 13px;")
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.label.hide()

        class _Follow(QObject):
            def eventFilter(self, obj: Any, ev: Any) -> bool:
                from qtpy.QtCore import QEvent

                if ev.type() == QEvent.Type.Resize:
                    outer._place()
                return False

        outer = self
        self._filter = _Follow(self.label)
        canvas.installEventFilter(self._filter)

    def text(self) -> str:
        """The message shown (in full: the label elides what does not fit)."""
        return str(self.label.toolTip())

    def setText(self, text: str) -> None:
        """Show ``text`` (elided to the canvas width)."""
        self.label.setToolTip(text)
        fm = self.label.fontMetrics()
        width = max(self.canvas.width() - 24, 40)
        self.label.setText(fm.elidedText(text, Qt.TextElideMode.ElideRight, width))
        self.label.adjustSize()
        self._place()
        if not self.label.isVisible():
            self.label.show()

    def _place(self) -> None:
        h = self.label.height()
        self.label.move(8, max(self.canvas.height() - h - 8, 0))

    def close(self) -> None:
        """Remove the label from the canvas."""
        import contextlib

        with contextlib.suppress(RuntimeError):
            self.canvas.removeEventFilter(self._filter)
            self.label.deleteLater()
