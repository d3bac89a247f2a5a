"""How soon ``paraspinal-app`` shows its first window (the start screen), from the launch of a
fresh process: a part of ``paraspinal bench gui``.

The child is the real app (``paraspinal_app.main`` without arguments) with one change: when
the start screen has been shown and painted, it prints the time and quits. The parent takes
the time just before it starts the child, so interpreter start-up and imports count.
"""

from __future__ import annotations

import subprocess
import sys
import time

#: What the child prints before the wall-clock time of the shown start screen.
MARK = "start screen shown at "


def seconds_to_start_screen(launches: int = 3, timeout_s: float = 60.0) -> list[float] | None:
    """Seconds from launch to the painted start screen, per launch (None: the app is not
    installed here)."""
    try:
        import paraspinal_app  # noqa: F401
    except ImportError:
        return None
    out = []
    for _ in range(launches):
        t0 = time.time()
        done = subprocess.run(
            [sys.executable, "-c", f"from {__name__} import child; child()"],
            capture_output=True, text=True, timeout=timeout_s, check=False)
        shown = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
        if not shown:
            raise RuntimeError(f"the app showed no start screen: {done.stderr[-400:]}")
        out.append(float(shown[0][len(MARK):]) - t0)
    return out


def child() -> None:
    """The app as launched without arguments; quits once the start screen is painted."""
    import paraspinal_app.start_screen as screen
    from paraspinal_app.main import main
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    show = screen.StartScreen.show

    def shown(self: screen.StartScreen) -> None:
        show(self)
        QApplication.processEvents()  # painted
        print(f"{MARK}{time.time():.4f}", flush=True)
        QTimer.singleShot(0, QApplication.instance().quit)

    screen.StartScreen.show = shown
    sys.exit(main([]))
