"""Window-wide key overrides for our docks (Ctrl+S save, Ctrl+Z / Ctrl+Shift+Z undo/redo).

napari binds Ctrl+S to "Save Selected Layers..." as an app-model menu action (a Qt
``QAction`` shortcut, which Qt handles before any key event reaches the canvas) and
Ctrl+Z to the Labels layer's own paint history. While one of our docks is open these keys
must do *our* action instead, wherever the keyboard focus is (canvas, dock or layer
list), and napari's must not fire at the same time.

Each of our actions is registered once with napari's ``action_manager`` under a
``neuroglia5d:`` name and the viewer as key-map provider, so it is listed (and can be
rebound) in napari's Preferences > Shortcuts under "Viewer key bindings". A
:class:`KeyOverride` installed by a dock then

* adds a window-wide ``QAction`` carrying the action's current shortcut (following any
  rebinding made in the preferences),
* takes the same key sequence off napari's own ``QAction`` objects (restored when the
  override is removed: closing the dock gives napari its binding back),
* binds the key on given layers' instance key maps (which napari consults before the
  class key map holding e.g. ``napari:undo``), so the canvas path reaches us too.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

#: our actions: name -> (description, default key in napari's notation)
ACTIONS: dict[str, tuple[str, str]] = {
    "neuroglia5d:save": ("Save the neuroglia5d working copy", "Control-S"),
    "neuroglia5d:undo": ("Undo the last neuroglia5d annotation operation", "Control-Z"),
    "neuroglia5d:redo": ("Redo the last undone neuroglia5d operation", "Control-Shift-Z"),
}

# (viewer id, action name) -> overrides installed there, latest last (the one that fires)
_STACKS: dict[tuple[int, str], list[KeyOverride]] = {}
# (viewer id, action name) -> the window-level binding shared by those overrides
_WINDOW: dict[tuple[int, str], _WindowBinding] = {}


def _top(viewer: Any, name: str) -> KeyOverride | None:
    stack = _STACKS.get((id(viewer), name))
    return stack[-1] if stack else None


def _dispatch(name: str) -> Callable[[Any], None]:
    def run(viewer: Any) -> None:
        ov = _top(viewer, name)
        if ov is not None:
            ov.callback()

    run.__name__ = name.split(":")[1]
    run.__doc__ = ACTIONS[name][0]
    return run


def register_actions() -> None:
    """Register our actions with napari's action manager (once per process).

    The shortcut comes from napari's settings when the user has rebound it there,
    otherwise from :data:`ACTIONS`.
    """
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    saved = get_settings().shortcuts.shortcuts
    for name, (desc, key) in ACTIONS.items():
        if name in action_manager._actions:
            continue
        action_manager.register_action(name, _dispatch(name), desc, ViewerModel)
        for k in saved.get(name) or [key]:
            action_manager.bind_shortcut(name, k)


def current_shortcuts(name: str) -> list[Any]:
    """The key bindings (app-model ``KeyBinding``) currently bound to action ``name``."""
    from app_model.types import KeyBinding
    from napari.utils.action_manager import action_manager

    out = []
    for s in action_manager._shortcuts.get(name, []):
        out.append(s if isinstance(s, KeyBinding) else KeyBinding.from_str(_to_app_model(s)))
    return out


def _to_app_model(key: str) -> str:
    """napari's ``Control-Shift-Z`` notation to app-model's ``Ctrl+Shift+Z``."""
    parts = key.replace("Control", "Ctrl").split("-")
    return "+".join(p if p else "-" for p in parts)


def _qt_sequences(name: str) -> list[Any]:
    from app_model.backends.qt import QKeyBindingSequence

    return [QKeyBindingSequence(kb) for kb in current_shortcuts(name)]


def _napari_actions(qt_window: Any) -> list[Any]:
    """Every QAction of napari's window and application (menus included)."""
    from qtpy.QtWidgets import QAction, QApplication, QMenu

    found: dict[int, Any] = {}
    roots = [qt_window, QApplication.instance()]
    for root in roots:
        for a in root.findChildren(QAction):
            found[id(a)] = a
    for menu in qt_window.findChildren(QMenu):
        for a in menu.actions():
            found[id(a)] = a
    try:  # app-model's cached menu actions may be parented elsewhere
        from app_model.backends.qt import QMenuItemAction

        for a in QMenuItemAction._cache.values():
            found[id(a)] = a
    except (ImportError, AttributeError):
        pass
    return list(found.values())


class KeyOverride:
    """Route one of our actions' keys to ``callback`` while installed.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose window gets the override.
    name : str
        One of :data:`ACTIONS`.
    callback : callable
        Called with no argument when the key is pressed.
    layers : list of napari layers, optional
        Layers whose instance key map also gets the key (use for keys napari binds on
        layer classes, such as Ctrl+Z on Labels).
    priority : int, optional
        Among overrides of the same key in one viewer the highest priority fires (the
        latest installed among equals). The Save dock saves with priority 1, so that
        Ctrl+S writes its ticked formats while it is open, and the annotation dock's own
        save (priority 0) takes over when it is closed.
    """

    def __init__(self, viewer: Any, name: str, callback: Callable[[], Any],
                 layers: list[Any] | None = None, priority: int = 0) -> None:
        if name not in ACTIONS:
            raise ValueError(f"unknown action {name!r}; expected one of {sorted(ACTIONS)}")
        self.viewer = getattr(viewer, "__wrapped__", viewer)  # napari's plugin proxy
        self.name = name
        self.callback = callback
        self.priority = priority
        self._layers = [weakref.ref(ly) for ly in layers or []]
        self._bound: list[str] = []  # keys bound on the layers (the shortcut may change)
        self._installed = False

    @property
    def installed(self) -> bool:
        """Whether the override is active."""
        return self._installed

    @property
    def _key(self) -> tuple[int, str]:
        return (id(self.viewer), self.name)

    def install(self) -> KeyOverride:
        """Activate: our callback fires, napari's action on the same key does not.

        Several docks may override the same key in one viewer; the one with the highest
        priority (installed last among equals) fires, and the next one takes over again
        when it is uninstalled.
        """
        if self._installed:
            return self
        register_actions()
        stack = _STACKS.setdefault(self._key, [])
        stack.append(self)
        stack.sort(key=lambda ov: ov.priority)  # stable: latest last among equals
        if self._key not in _WINDOW:
            _WINDOW[self._key] = _WindowBinding(self.viewer, self.name)
        self._installed = True
        self._bind_layers()
        return self

    def uninstall(self) -> None:
        """Deactivate; when no override of this key is left, napari gets its binding back."""
        if not self._installed:
            return
        self._installed = False
        stack = _STACKS.get(self._key, [])
        if self in stack:
            stack.remove(self)
        self._unbind_layers()
        if not stack:
            _STACKS.pop(self._key, None)
            wb = _WINDOW.pop(self._key, None)
            if wb is not None:
                wb.close()

    # -- layer instance key maps --------------------------------------------------------
    def _layer_keys(self) -> list[str]:
        from napari.utils.action_manager import action_manager

        return [str(s) for s in action_manager._shortcuts.get(self.name, [])]

    def _bind_layers(self) -> None:
        fire = _dispatch(self.name)
        viewer = self.viewer
        self._bound = self._layer_keys()
        for ref in self._layers:
            layer = ref()
            if layer is None:
                continue
            for key in self._bound:
                layer.bind_key(key, lambda _layer: fire(viewer), overwrite=True)

    def _unbind_layers(self, *, keep_shared: bool = True) -> None:
        others = [ov for ov in _STACKS.get(self._key, []) if ov is not self]
        still = {id(r()) for ov in others for r in ov._layers} if keep_shared else set()
        for ref in self._layers:
            layer = ref()
            if layer is None or id(layer) in still:
                continue
            for key in self._bound:
                if key in layer.keymap or _normalised(key) in {str(k) for k in layer.keymap}:
                    layer.bind_key(key, None)
        self._bound = []


class _WindowBinding:
    """One window-wide QAction for an action in a viewer, napari's same-key actions muted."""

    def __init__(self, viewer: Any, name: str) -> None:
        from napari.utils.action_manager import action_manager

        self.viewer = viewer
        self.name = name
        self._qaction: Any = None
        self._taken: list[tuple[Any, Any]] = []  # (napari QAction, its shortcuts)
        self._add()
        action_manager.events.shortcut_changed.connect(self._on_shortcut_changed)

    def close(self) -> None:
        from napari.utils.action_manager import action_manager

        action_manager.events.shortcut_changed.disconnect(self._on_shortcut_changed)
        self._remove()

    def _fire(self) -> None:
        ov = _top(self.viewer, self.name)
        if ov is not None:
            ov.callback()

    def _add(self) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QAction

        seqs = _qt_sequences(self.name)
        win = self.viewer.window._qt_window
        wanted = {s.toString() for s in seqs}
        for a in _napari_actions(win):
            if a.objectName().startswith("neuroglia5d"):
                continue
            if any(s.toString() in wanted for s in a.shortcuts()):
                self._taken.append((a, list(a.shortcuts())))
                a.setShortcuts([s for s in a.shortcuts() if s.toString() not in wanted])
        qa = QAction(win)
        qa.setObjectName(self.name)
        qa.setShortcuts(seqs)
        qa.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        qa.triggered.connect(lambda *_: self._fire())
        win.addAction(qa)
        self._qaction = qa

    def _remove(self) -> None:
        if self._qaction is not None:
            try:
                self.viewer.window._qt_window.removeAction(self._qaction)
                self._qaction.deleteLater()
            except (RuntimeError, AttributeError):  # window already gone
                pass
            self._qaction = None
        for a, shortcuts in self._taken:
            with contextlib.suppress(RuntimeError):
                a.setShortcuts(shortcuts)
        self._taken = []

    def _on_shortcut_changed(self, event: Any) -> None:
        if getattr(event, "name", None) != self.name:
            return
        self._remove()
        self._add()
        for ov in _STACKS.get((id(self.viewer), self.name), []):
            ov._unbind_layers(keep_shared=False)  # the old keys
            ov._bind_layers()


def _normalised(key: str) -> str:
    from app_model.types import KeyBinding

    return str(KeyBinding.from_str(_to_app_model(key)))

