"""Layout checks for the GUI screens: cut-off text, overlapping widgets, widgets out of sight.

Each checker walks the visible widgets under a top window and returns a list of readable
problems (empty when the screen is right), so a test can assert ``not problems`` and show
them all at once. The checks are geometric, from Qt's own size hints; they need the event
loop processed after the last resize (:func:`settle`).

* :func:`cut_off` — a label, button, check box, radio button or combo box narrower than its
  text needs; a word-wrapped label shorter than its wrapped text; a tab whose title does not
  fit its tab.
* :func:`overlaps` — two visible sibling widgets of a laid-out parent that intersect.
* :func:`outside` — a visible widget that reaches beyond its top window or its parent
  widget (a scroll area's viewport is the bound for what it scrolls, and what it holds must
  be reachable by scrolling rather than cut).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qtpy.QtCore import QPoint, QRect, Qt
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QTabBar,
    QWidget,
)

#: Pixels a tab needs beyond its text's advance (Qt's tab margins).
TAB_PADDING = 4
#: Rows a napari dock's title bar and the dock's widget share by design (padding only).
TITLE_OVERLAP = 4
#: Pixels of tolerance for a size hint (rounding of fractional font metrics).
SLACK = 1


def settle(rounds: int = 5) -> None:
    """Process the event loop a few times: layouts settle after several passes."""
    for _ in range(rounds):
        QApplication.processEvents()
        QApplication.sendPostedEvents()


def visible_widgets(top: QWidget) -> Iterator[QWidget]:
    """``top`` and every descendant shown on screen (:func:`shown`, and so are all its
    ancestors up to ``top``)."""
    yield top
    stack = list(reversed(_children(top)))
    while stack:
        widget = stack.pop()
        if not shown(widget):
            continue
        yield widget
        stack += reversed(_children(widget))


def shown(widget: QWidget) -> bool:
    """Visible, with a size, not a window of its own, and not a dock tabbed behind another
    (Qt leaves those "visible" but moves them off screen)."""
    if not widget.isVisible() or widget.isWindow() or widget.width() <= 0 \
            or widget.height() <= 0:
        return False
    return not (isinstance(widget, QDockWidget) and widget.visibleRegion().isEmpty())


def _children(widget: QWidget) -> list[QWidget]:
    return [c for c in widget.children() if isinstance(c, QWidget)]


def describe(widget: QWidget) -> str:
    """``Type 'text' (objectName) in ParentType``: what a person needs to find the widget."""
    text = _text(widget)
    name = f" ({widget.objectName()})" if widget.objectName() else ""
    parent = widget.parentWidget()
    where = f" in {type(parent).__name__}" if parent is not None else ""
    label = f" {text!r}" if text else ""
    return f"{type(widget).__name__}{label}{name}{where}"


def _text(widget: QWidget) -> str:
    if isinstance(widget, QLabel | QAbstractButton):
        return widget.text()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    return ""


def _in_scrolled(widget: QWidget, top: QWidget) -> bool:
    """Whether ``widget`` lies in a scroll area's viewport below ``top`` (partly hidden by
    scrolling, which is not a fault)."""
    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        if isinstance(parent.parentWidget(), QAbstractScrollArea) \
                and parent is parent.parentWidget().viewport():
            return True
        parent = parent.parentWidget()
    return False


def cut_off(top: QWidget) -> list[str]:
    """Text that does not fit its widget, below ``top``.

    A label (not word-wrapped), push button, check box or radio button narrower than its
    sizeHint, a combo box narrower than its minimumSizeHint, a word-wrapped label lower
    than ``heightForWidth(width)``, a tab whose title's advance (+ :data:`TAB_PADDING`) is
    wider than its tab while the bar elides. Labels and buttons without text are skipped.
    """
    problems: list[str] = []
    for widget in visible_widgets(top):
        if isinstance(widget, QTabBar):
            problems += _tab_problems(widget)
            continue
        if not _text(widget) and not isinstance(widget, QComboBox):
            continue
        size = widget.size()
        if isinstance(widget, QLabel):
            if widget.wordWrap():
                need = widget.heightForWidth(size.width())
                if need > size.height() + SLACK:
                    problems.append(f"{describe(widget)}: wrapped text needs height {need} "
                                    f"at width {size.width()}, has {size.height()}")
                continue
            need = widget.sizeHint().width()
        elif isinstance(widget, QPushButton | QCheckBox | QRadioButton):
            need = widget.sizeHint().width()
        elif isinstance(widget, QComboBox):
            need = widget.minimumSizeHint().width()
        else:
            continue
        if size.width() + SLACK < need:
            problems.append(f"{describe(widget)}: width {size.width()} < needed {need}")
    return problems


def _tab_problems(bar: QTabBar) -> list[str]:
    problems = []
    metrics = bar.fontMetrics()
    for i in range(bar.count()):
        if not bar.isTabVisible(i):
            continue
        text = bar.tabText(i)
        rect = bar.tabRect(i)
        need = metrics.horizontalAdvance(text) + TAB_PADDING
        vertical = bar.shape() in (QTabBar.Shape.RoundedWest, QTabBar.Shape.RoundedEast,
                                   QTabBar.Shape.TriangularWest, QTabBar.Shape.TriangularEast)
        have = rect.height() if vertical else rect.width()
        if bar.elideMode() != Qt.TextElideMode.ElideNone and have < need:
            problems.append(f"tab {text!r} of {describe(bar)}: {have} px < text {need} px "
                            "(elided)")
        elif have < need - 2 * TAB_PADDING:  # no eliding, but the text is clipped
            problems.append(f"tab {text!r} of {describe(bar)}: {have} px < text {need} px")
        if not bar.usesScrollButtons() and not bar.rect().contains(rect):
            problems.append(f"tab {text!r} of {describe(bar)} lies outside its bar")
    return problems


def overlaps(top: QWidget) -> list[str]:
    """Visible sibling widgets that intersect, for every visible widget with a layout
    (a dock's title bar and its widget may share :data:`TITLE_OVERLAP` rows: napari lays
    the widget over the title bar's bottom padding). Touching edges are allowed: only an
    intersection of positive width and height counts.
    """
    problems: list[str] = []
    for parent in visible_widgets(top):
        if parent.layout() is None:
            continue
        children = [c for c in _children(parent) if shown(c)
                    and parent.layout().indexOf(c) >= 0]
        title = parent.titleBarWidget() if isinstance(parent, QDockWidget) else None
        for k, a in enumerate(children):
            for b in children[k + 1:]:
                common = a.geometry().intersected(b.geometry())
                if title is not None and title in (a, b) and common.height() <= TITLE_OVERLAP:
                    continue  # napari's dock title bar: its padding lies under the widget
                if common.width() > 0 and common.height() > 0:
                    problems.append(f"{describe(a)} {_rect(a.geometry())} overlaps "
                                    f"{describe(b)} {_rect(b.geometry())}")
    return problems


def outside(top: QWidget) -> list[str]:
    """Visible widgets that reach beyond ``top``'s rect or their parent's rect (so part of
    them is cut off), or beyond the viewport of the scroll area holding them when that
    area cannot scroll to them."""
    problems: list[str] = []
    window = top.rect()
    for widget in visible_widgets(top):
        if widget is top:
            continue
        if _in_scrolled(widget, top):
            continue  # checked against its scroll area below
        rect = QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())
        if not window.contains(rect):
            problems.append(f"{describe(widget)} {_rect(rect)} outside the window "
                            f"{_rect(window)}")
            continue
        parent = widget.parentWidget()
        if parent is not None and parent is not top \
                and not parent.rect().contains(widget.geometry()):
            problems.append(f"{describe(widget)} {_rect(widget.geometry())} cut by its "
                            f"parent {describe(parent)} {_rect(parent.rect())}")
    for area in top.findChildren(QScrollArea):
        if not area.isVisible() or area.widget() is None:
            continue
        inner, port = area.widget(), area.viewport()
        for bar, extent, have in ((area.horizontalScrollBar(), inner.width(), port.width()),
                                  (area.verticalScrollBar(), inner.height(), port.height())):
            reach = have + bar.maximum() - bar.minimum()
            if extent > reach + SLACK:
                problems.append(f"{describe(inner)} in {describe(area)}: {extent} px of "
                                f"content, only {reach} px reachable by scrolling")
        if area.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff \
                and inner.width() > port.width() + SLACK:
            problems.append(f"{describe(inner)} is {inner.width()} px wide in a "
                            f"{port.width()} px viewport without a horizontal scroll bar")
    return problems


def problems(top: QWidget) -> list[str]:
    """All three checks of ``top``."""
    return cut_off(top) + overlaps(top) + outside(top)


def save_screen(top: QWidget, folder: str | Path | None, name: str) -> Path | None:
    """``folder/name.png``: a grab of the whole top window (None when no folder), in 256
    colours and optimised, so the README's screenshots stay small in git."""
    if not folder:
        return None
    from PIL import Image

    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    top.grab().save(str(path), "PNG")
    with Image.open(path) as grabbed:
        image = grabbed.convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                           dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path


def _rect(rect: QRect) -> str:
    return f"({rect.x()},{rect.y()} {rect.width()}x{rect.height()})"
