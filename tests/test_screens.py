"""Every screen of the app at 1280×800 and 1920×1080: no cut-off text, no overlapping
widgets, nothing outside the window (checks in :mod:`_helpers_screens`).

The screens: the start screen with two recent projects; the main window without a project,
the L4-L5 phantom segmented, with the Segment, Fat and areas, Export and Legend tabs in
front; the main window with a project of four phantom cases, one open, the worklist left.
With ``PARASPINAL_SCREENSHOTS=DIR`` each screen is also saved as ``DIR/<screen>_<W>x<H>.png``
(the README's screenshots: ``make screens``)::

    PARASPINAL_SCREENSHOTS=docs/screens xvfb-run -a -s "-screen 0 1920x1080x24" \\
        .venv/bin/pytest tests/test_screens.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _helpers_screens import cut_off, outside, overlaps, problems, save_screen, settle

from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run")
SIZES = [(1280, 800), (1920, 1080)]
WAIT_MS = 120_000
SHOTS = os.environ.get("PARASPINAL_SCREENSHOTS")


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's settings in a temporary folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("PARASPINAL_APP_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, object]]:
    """Four phantom slices as NIfTI files, with their true labels."""
    folder = tmp_path_factory.mktemp("screens")
    out = []
    for seed, level in ((5, "L4-L5"), (7, "L5-S1"), (9, "L4-L5"), (11, "L5-S1")):
        case = generate_phantom(seed, PhantomConfig(level=level))
        out.append((write_image(case.image, folder / f"subject-{seed:02d}.nii.gz"),
                    case.labels))
    return out


def _screen_size() -> tuple[int, int]:
    from qtpy.QtWidgets import QApplication

    geometry = QApplication.primaryScreen().geometry()
    return geometry.width(), geometry.height()


def _resize(qtbot, window, size: tuple[int, int]) -> None:
    """Show ``window`` at exactly ``size``. Without a window manager X lets a window be
    larger than the screen (``xvfb-run -a`` gives 1280x1024), so the checks run anywhere;
    the screenshots want ``-s "-screen 0 1920x1080x24"`` (whole windows, true colours)."""
    window.move(0, 0)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    try:
        qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=5000)
    except AssertionError:
        pytest.fail(f"Qt refused the size {size}: the window is {window.width()}x"
                    f"{window.height()} on a {_screen_size()} screen")
    settle()


def _check(window, name: str, size: tuple[int, int]) -> None:
    """Save the screen when asked, then assert every check passes."""
    settle()
    assert (window.width(), window.height()) == size, "Qt refused the size"
    save_screen(window, SHOTS, f"{name}_{size[0]}x{size[1]}")
    found = problems(window)
    assert not found, f"{name} at {size[0]}x{size[1]}:\n" + "\n".join(found)


# ---------------------------------------------------------------- the checkers can fail


def test_checkers_report_a_broken_layout(qtbot) -> None:
    """A label forced narrower than its text, a wrapped label too low, a combo box too
    narrow, two overlapping siblings and a child sticking out of its window are all
    reported; the same widgets laid out properly pass."""
    from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

    good = QWidget()
    qtbot.addWidget(good)
    row = QHBoxLayout(good)
    row.addWidget(QLabel("a label with a long text"))
    row.addWidget(QPushButton("a button"))
    good.show()
    qtbot.waitExposed(good)
    settle()
    assert problems(good) == []

    bad = QWidget()
    qtbot.addWidget(bad)
    layout = QHBoxLayout(bad)
    narrow = QLabel("a label with a long text that cannot fit")
    narrow.setFixedWidth(40)
    wrapped = QLabel("a wrapped label " * 8)
    wrapped.setWordWrap(True)
    wrapped.setFixedSize(60, 16)
    combo = QComboBox()
    combo.addItem("a rather long choice in a combo box")
    combo.setFixedWidth(30)
    layout.addWidget(narrow)
    layout.addWidget(wrapped)
    layout.addWidget(combo)
    one, two = QPushButton("one"), QPushButton("two")
    layout.addWidget(one)
    layout.addWidget(two)
    bad.resize(600, 80)
    bad.show()
    qtbot.waitExposed(bad)
    settle()
    stray = QLabel("out", bad)
    stray.setGeometry(580, 70, 60, 30)  # beyond the window's right and bottom
    stray.show()
    settle()
    two.setGeometry(one.geometry().translated(5, 0))  # overlap, as a broken layout would

    cut = "\n".join(cut_off(bad))
    assert "QLabel 'a label with a long text that cannot fit'" in cut and "< needed" in cut
    assert "wrapped text needs height" in cut
    assert "QComboBox 'a rather long choice in a combo box'" in cut
    assert "QPushButton 'one'" in "\n".join(overlaps(bad))
    assert "QLabel 'out'" in "\n".join(outside(bad))
    inner = QWidget(bad)  # a child sticking out of its parent, inside the window
    inner.setGeometry(0, 0, 50, 50)
    clipped = QPushButton("clipped", inner)
    clipped.setGeometry(30, 0, 80, 20)
    inner.show()
    settle()
    assert "QPushButton 'clipped'" in "\n".join(outside(bad))
    assert "cut by its parent" in "\n".join(outside(bad))


def test_checkers_see_an_elided_tab_and_content_cut_in_a_scroll_area(qtbot) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QLabel, QScrollArea, QTabBar, QVBoxLayout, QWidget

    top = QWidget()
    qtbot.addWidget(top)
    layout = QVBoxLayout(top)
    bar = QTabBar()
    bar.setElideMode(Qt.TextElideMode.ElideRight)
    bar.setExpanding(False)
    for title in ("a long tab title", "another long tab title"):
        bar.addTab(title)
    bar.setUsesScrollButtons(False)
    bar.setFixedWidth(60)
    layout.addWidget(bar)
    area = QScrollArea()
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    wide = QLabel("x" * 200)
    area.setWidget(wide)
    area.setWidgetResizable(False)
    layout.addWidget(area)
    top.resize(300, 200)
    top.show()
    qtbot.waitExposed(top)
    settle()
    assert "tab 'a long tab title'" in "\n".join(cut_off(top))
    assert "without a horizontal scroll bar" in "\n".join(outside(top))


# ---------------------------------------------------------------- the screens


@needs_display
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_start_screen(qtbot, tmp_path, size) -> None:
    """The start screen with two recent projects: as the app shows it (its own size, saved
    as the screenshot) and stretched to the window size."""
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.start_screen import PROJECT_DB, StartScreen

    store = SettingsStore()
    for name in ("lumbar study 2024", "follow-up visits"):
        folder = tmp_path / "projects" / name
        folder.mkdir(parents=True)
        (folder / PROJECT_DB).touch()
        store.add_recent(folder)
    screen = StartScreen(store)
    qtbot.addWidget(screen)
    assert screen.recent_list.count() == 2
    screen.show()
    qtbot.waitExposed(screen)
    settle()
    natural = (screen.width(), screen.height())
    found = problems(screen)
    assert not found, f"start screen at {natural}:\n" + "\n".join(found)
    if size == SIZES[0]:  # the app's own size: one screenshot is enough
        save_screen(screen, SHOTS, "start")
    _resize(qtbot, screen, size)
    settle()
    assert (screen.width(), screen.height()) == size
    found = problems(screen)
    assert not found, f"start screen at {size}:\n" + "\n".join(found)


@needs_display
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_window_with_the_sample_segmented(make_napari_viewer, qtbot, size) -> None:
    """The main window without a project: the L4-L5 phantom opened and segmented, each of
    the right-hand tabs in front in turn."""
    from paraspinal_app.window import open_viewer, state_of

    from napari_paraspinal._napari.measure_widget import DEBOUNCE_MS

    viewer = open_viewer(sample="L4-L5", show=True, viewer=make_napari_viewer(show=True))
    state = state_of(viewer)
    window = state.qt_window
    _resize(qtbot, window, size)
    viewer.reset_view()  # as when the image is opened in a window of this size
    segment = state.widgets["Segment"]
    assert segment.start() is not None
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert any(type(ly).__name__ == "Labels" for ly in viewer.layers)
    measure = state.widgets["Fat and areas"]
    qtbot.waitUntil(lambda: measure.last is not None, timeout=WAIT_MS)
    qtbot.wait(2 * DEBOUNCE_MS)  # a measurement asked for by the resize: let it finish
    qtbot.waitUntil(lambda: "measuring" not in measure.status.text(), timeout=WAIT_MS)
    for name, shot in (("Segment", "segment"), ("Fat and areas", "fat"),
                       ("Export", "export"), ("Labels legend", "legend")):
        dock = state.docks[name]
        dock.raise_()
        qtbot.waitUntil(lambda d=dock: not d.visibleRegion().isEmpty(), timeout=5000)
        _check(window, f"main_{shot}", size)


@needs_display
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_window_with_a_project(make_napari_viewer, qtbot, tmp_path, phantom_files,
                                    size) -> None:
    """A project of four phantom cases (two segmented, one verified), the first case open,
    the worklist on the left."""
    from paraspinal_app.window import PROJECT_WIDGET, open_viewer, state_of

    from napari_paraspinal.project import Project

    with Project.init(tmp_path / "lumbar study") as project:
        ids = [project.add([path]).ids[0] for path, _ in phantom_files]
        project.save_labels(ids[0], phantom_files[0][1], "automatic")
        project.save_labels(ids[1], phantom_files[1][1], "automatic")
        project.save_labels(ids[2], phantom_files[2][1], "verified")
    viewer = open_viewer(project=str(tmp_path / "lumbar study"), show=True,
                         viewer=make_napari_viewer(show=True))
    state = state_of(viewer)
    window = state.qt_window
    _resize(qtbot, window, size)
    widget = state.widgets[PROJECT_WIDGET]
    assert widget.open_case(ids[0])
    viewer.reset_view()
    dock = state.docks[PROJECT_WIDGET]
    qtbot.waitUntil(lambda: not dock.visibleRegion().isEmpty(), timeout=5000)
    # the Fat and areas tab measures the opened case in a worker: let it finish, so no
    # result arrives after the window is closed
    measure = state.widgets["Fat and areas"]
    qtbot.waitUntil(lambda: measure.last is not None, timeout=WAIT_MS)
    _check(window, "project", size)


#: The least width of the image canvas beside the worklist and the tabs at 1280×800.
MIN_CANVAS = 320


@needs_display
def test_the_canvas_keeps_room_beside_the_worklist(make_napari_viewer, qtbot, tmp_path) -> None:
    """With a project at 1280×800 the image canvas keeps at least :data:`MIN_CANVAS` px:
    the docks are narrowed to their least widths (``paraspinal_app.window.fit_docks``)."""
    from paraspinal_app.window import open_viewer, state_of

    from napari_paraspinal.project import Project

    Project.init(tmp_path / "study").close()
    viewer = open_viewer(project=str(tmp_path / "study"), show=True,
                         viewer=make_napari_viewer(show=True))
    window = state_of(viewer).qt_window
    _resize(qtbot, window, SIZES[0])
    settle()
    assert window.centralWidget().width() >= MIN_CANVAS
