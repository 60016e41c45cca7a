"""A scripted user session in a real QGIS window, with screenshots of each step.

Not a pytest test: QGIS runs it after start-up, with the plugin loaded from the working tree:

    RSIR_TOUR_OUT=out/tour RSIR_TOUR_MODEL=/path/model.onnx \
        xvfb-run -s "-screen 0 1600x1000x24" scripts/run-qgis --code tests/qgis/gui_tour.py

Steps: add rasters and save the project, open the build dialog, build the index (progress in the
message bar), drag a box on the map with real mouse events, look at the hits and the dock, click a
hit, then quit. Screenshots of the whole screen go to $RSIR_TOUR_OUT; the log to tour.log there.
RSIR_TOUR_MODEL is optional (default: the bundled model).
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtTest import QTest
from qgis.utils import iface, plugins

ROOT = Path.cwd()  # QGIS exec()s this file: no __file__; scripts/run-qgis runs in the repository
OUT = Path(os.environ.get("RSIR_TOUR_OUT", ROOT / "out" / "tour")).resolve()
MODEL = os.environ.get("RSIR_TOUR_MODEL", "")
RASTERS = [Path("/work/shared/data/rasters/oam_5b90f92da0d7280005fab355_4310.tif"),
           Path("/work/shared/data/rasters/oam_5dded5bc0140b80006d2e565_23.tif")]
OUT.mkdir(parents=True, exist_ok=True)
LOG = open(OUT / "tour.log", "w")  # noqa: SIM115 - lives as long as the session


def say(text: str) -> None:
    LOG.write(text + "\n")
    LOG.flush()


def shot(name: str) -> None:
    QGuiApplication.processEvents()
    path = OUT / f"{name}.png"
    QGuiApplication.primaryScreen().grabWindow(0).save(str(path))
    say(f"screenshot {path}")


class Tour:
    def __init__(self):
        self.plugin = plugins["rsir_qgis_plugin"]
        self.dialog = None
        self.steps = [self.open_project, self.zoom, self.start_screen, self.open_dialog, self.dialog_described,
                      self.start_build, self.building, self.wait_build, self.draw_box, self.wait_search,
                      self.click_hit, self.processing_dialog, self.finish]
        self.wait_until = None

    def run(self) -> None:
        QTimer.singleShot(3000, self.next)

    def next(self) -> None:
        if self.wait_until is not None and not self.wait_until():
            QTimer.singleShot(500, self.next)
            return
        self.wait_until = None
        step = self.steps.pop(0)
        say(f"step {step.__name__}")
        try:
            delay = step() or 1500
        except Exception:  # noqa: BLE001 - the log must say what broke, then QGIS quits
            say(traceback.format_exc())
            self.finish()
            return
        if self.steps:
            QTimer.singleShot(delay, self.next)

    def open_project(self):
        iface.mainWindow().setGeometry(0, 0, 1600, 1000)  # Xvfb has no window manager to maximise it
        project = QgsProject.instance()
        for path in RASTERS:
            project.addMapLayer(QgsRasterLayer(str(path), path.stem, "gdal"))
        # Web Mercator while the rasters are World Mercator: every query crosses a reprojection.
        project.setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
        project.write(str(OUT / "tour.qgz"))
        return 1000

    def zoom(self):
        QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))  # QGIS took the first layer's
        canvas = iface.mapCanvas()
        layer = QgsProject.instance().mapLayersByName(RASTERS[0].stem)[0]
        canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent()))
        canvas.refresh()

    def start_screen(self):
        self.plugin.dock.show()
        shot("01_plugin_loaded")

    def open_dialog(self):
        from rsir_qgis_plugin.gui.build_dialog import BuildIndexDialog

        self.dialog = BuildIndexDialog(QgsProject.instance(), iface.mainWindow())
        if MODEL:
            self.dialog.model_box.file_model_radio.setChecked(True)
            self.dialog.model_box.model_widget.setFilePath(MODEL)
        self.dialog.show()
        self.wait_until = lambda: not self.dialog.model_box.model_label.text().startswith("Reading")
        return 500

    def dialog_described(self):
        shot("02_build_dialog")

    def start_build(self):
        self.dialog.accept()
        params = self.dialog.build_params()
        say(f"params {params}")
        self.build_result = []
        self.plugin.build.buildEnded.connect(self.build_result.append)
        self.plugin.build.start(params)
        return 4000

    def building(self):
        shot("03_building")

    def wait_build(self):
        self.wait_until = lambda: bool(self.build_result)
        return 500

    def draw_box(self):
        say(f"build {self.build_result}: {getattr(self.plugin.build.summary, 'describe', lambda: '')()}")
        shot("04_built")
        self.plugin.find_action.trigger()
        canvas = iface.mapCanvas()
        viewport = canvas.viewport()
        size = viewport.size()
        # A box a little left and above the centre of the view, about 1/8 of its height.
        start = QPoint(int(size.width() * 0.42), int(size.height() * 0.38))
        end = QPoint(start.x() + size.height() // 8, start.y() + size.height() // 8)
        self.search_result = []
        self.plugin.search.searchFinished.connect(self.search_result.append)
        QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
        for t in (0.25, 0.5, 0.75, 1.0):
            QTest.mouseMove(viewport, QPoint(int(start.x() + (end.x() - start.x()) * t),
                                             int(start.y() + (end.y() - start.y()) * t)), 30)
        QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
        return 500

    def wait_search(self):
        self.wait_until = lambda: bool(self.search_result) or "failed" in self.plugin.dock.status_label.text()
        return 500

    def click_hit(self):
        say(f"status: {self.plugin.dock.status_label.text()}")
        shot("05_hits")
        dock_list = self.plugin.dock.hit_list
        if dock_list.count() > 1:
            item = dock_list.item(1)
            rect = dock_list.visualItemRect(item)
            QTest.mouseClick(dock_list.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                             rect.center())
        return 2000

    def processing_dialog(self):
        shot("06_hit_clicked")
        import processing

        self.algorithm_dialog = processing.createAlgorithmDialog("rsir:find_similar", {
            "INDEX": str(OUT / "tour_rsir_index"), "K": 10})
        self.algorithm_dialog.show()
        return 2000

    def finish(self):
        shot("07_processing_find_similar")
        if getattr(self, "algorithm_dialog", None) is not None:
            self.algorithm_dialog.close()
        QgsProject.instance().setDirty(False)
        say("quitting")
        QTimer.singleShot(500, iface.actionExit().trigger)
        # Only reached if QGIS is still up 10 s later: show what holds it.
        QTimer.singleShot(10000, lambda: (shot("07_still_running"), say("QGIS did not quit")))


tour = Tour()
tour.run()
