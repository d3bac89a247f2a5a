"""A small live plot of training loss and validation Dice per epoch (the fine-tune panel's)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget


class CurveWidget(QWidget):
    """A small live plot of training loss (orange, scaled to its maximum) and validation
    Dice (blue, 0–1) per epoch."""

    LOSS = QColor(230, 140, 40)
    DICE = QColor(60, 110, 220)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history: list[dict] = []
        self.setMinimumHeight(90)

    def set_history(self, history: Sequence[dict]) -> None:
        """Show these epoch entries (keys ``loss`` and ``val_dice``)."""
        self.history = list(history)
        self.update()

    def paintEvent(self, _event: Any) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = self.rect().adjusted(4, 14, -4, -4)
        painter.setPen(QPen(QColor(128, 128, 128)))
        painter.drawRect(box)
        painter.setPen(QPen(self.LOSS))
        painter.drawText(6, 11, "loss")
        painter.setPen(QPen(self.DICE))
        painter.drawText(40, 11, "val Dice")
        n = len(self.history)
        if n == 0:
            return
        losses = [_finite(e.get("loss")) for e in self.history]
        top = max((v for v in losses if v is not None), default=0.0) * 1.1
        dice = [_finite(e.get("val_dice")) for e in self.history]
        for values, scale, color in ((losses, top, self.LOSS), (dice, 1.0, self.DICE)):
            if not scale:
                continue
            points = [QPointF(box.left() + box.width() * (k / max(1, n - 1)),
                              box.bottom() - box.height() * min(1.0, v / scale))
                      for k, v in enumerate(values) if v is not None]
            painter.setPen(QPen(color, 2))
            if len(points) == 1:
                painter.drawEllipse(points[0], 2, 2)
            else:
                painter.drawPolyline(QPolygonF(points))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
