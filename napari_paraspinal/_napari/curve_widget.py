"""The fine-tune panel's live plot: training loss and validation Dice per epoch, with axes.

Drawn by matplotlib (its Qt canvas), the product's one plotting library: loss on the left
axis, held-out Dice on the right axis (0–1), epochs along the bottom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QVBoxLayout, QWidget

LOSS = "#e68c28"
#: Room around the axes (left, right, bottom, top) in points: tick labels and axis titles.
MARGINS_PT = (38.0, 38.0, 27.0, 5.0)
DICE = "#3c6edc"


class CurveWidget(QWidget):
    """Training loss (orange, left axis) and validation Dice (blue, right axis, 0–1) per
    epoch; :meth:`set_history` redraws it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history: list[dict] = []
        # fixed margins, not matplotlib's constrained layout: that one measures every text
        # on every draw, most of a redraw's time on the GUI thread
        self.figure = Figure(figsize=(3.2, 1.6), dpi=80)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.mpl_connect("resize_event", lambda _event: self._fit())
        self.canvas.setMinimumHeight(120)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.loss_axes = self.figure.add_subplot()
        self.dice_axes = self.loss_axes.twinx()
        # the lines are made once and given new points: clearing and rebuilding the axes
        # costs the GUI thread tens of ms per epoch
        style = {"marker": "o", "markersize": 3, "linewidth": 1.5}
        (self.loss_line,) = self.loss_axes.plot([], [], color=LOSS, **style)
        (self.dice_line,) = self.dice_axes.plot([], [], color=DICE, **style)
        self.loss_axes.set_xlabel("epoch", fontsize=8)
        self.loss_axes.set_ylabel("loss", color=LOSS, fontsize=8)
        self.dice_axes.set_ylabel("held-out Dice", color=DICE, fontsize=8)
        self.dice_axes.set_ylim(0.0, 1.0)
        self.loss_axes.xaxis.get_major_locator().set_params(integer=True)
        for ax in (self.loss_axes, self.dice_axes):
            ax.tick_params(labelsize=7)
        self._fit()
        self._draw()

    def _fit(self) -> None:
        """The axes inside the figure with :data:`MARGINS_PT` around them."""
        left, right, bottom, top = (m * self.figure.dpi / 72.0 for m in MARGINS_PT)
        width, height = self.figure.bbox.width, self.figure.bbox.height
        if width > left + right + 10 and height > bottom + top + 10:
            self.figure.subplots_adjust(left=left / width, right=1.0 - right / width,
                                        bottom=bottom / height, top=1.0 - top / height)

    def set_history(self, history: Sequence[dict]) -> None:
        """Show these epoch entries (keys ``loss`` and ``val_dice``); nothing is redrawn
        when they are the ones shown."""
        history = list(history)
        if history == self.history:
            return
        self.history = history
        self._draw()

    def series(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The plotted points: (epoch, loss) and (epoch, Dice), non-finite values left out."""
        loss = [(k + 1, v) for k, e in enumerate(self.history)
                if (v := _finite(e.get("loss"))) is not None]
        dice = [(k + 1, v) for k, e in enumerate(self.history)
                if (v := _finite(e.get("val_dice"))) is not None]
        return loss, dice

    def _draw(self) -> None:
        loss, dice = self.series()
        for line, points in ((self.loss_line, loss), (self.dice_line, dice)):
            xs, ys = zip(*points, strict=True) if points else ((), ())
            line.set_data(xs, ys)
        if loss:
            low, high = min(v for _, v in loss), max(v for _, v in loss)
            pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
            self.loss_axes.set_ylim(low - pad, high + pad)
        self.loss_axes.set_xlim(0.5, max(2, len(self.history)) + 0.5)
        self.canvas.draw_idle()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
