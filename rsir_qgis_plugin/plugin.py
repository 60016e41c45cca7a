"""The QGIS plugin object: creates the actions, dock, map tool and Processing provider, and
removes every one of them on unload. Wiring only: the work is in the controllers and tasks."""
from __future__ import annotations

import contextlib
from pathlib import Path

from qgis.core import QgsApplication, QgsRectangle, QgsSettings
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from .tasks import is_active

HERE = Path(__file__).resolve().parent
MENU = "&rsir"
DOCK_VISIBLE_KEY = "rsir/dock_visible"
UNLOAD_WAIT_MS = 15000  # a build notices cancellation within one batch of tiles


class RsirPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions: list[QAction] = []
        self.toolbar: QToolBar | None = None
        self.dock = None
        self.map_tool = None
        self.dependencies = None
        self.search = None
        self.build = None
        self.change = None  # gui/change_controller.ChangeController: Compare dates
        self.compare_action: QAction | None = None
        self.find_action: QAction | None = None
        self.build_action: QAction | None = None
        self.dock_action: QAction | None = None
        self.diagnostics_action: QAction | None = None
        self.chips_action: QAction | None = None
        self.diagnostics = None  # the Diagnostics window while it is open

    # QGIS entry points -------------------------------------------------------------------

    def initProcessing(self) -> None:  # noqa: N802 (QGIS calls it, also for qgis_process)
        if self.provider is None:
            from .processing.provider import RsirProvider

            self.provider = RsirProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        from .gui.build_controller import BuildController
        from .gui.change_controller import ChangeController
        from .gui.dependency_prompt import DependencyPrompt
        from .gui.dock import ResultsDock
        from .gui.map_tool import BoxMapTool
        from .gui.search_controller import SearchController

        self.initProcessing()
        window = self.iface.mainWindow()
        canvas = self.iface.mapCanvas()
        self.dependencies = DependencyPrompt(self.iface)

        self.find_action = self._action("rsirFindSimilar", "Find similar places", "gui/icons/find.png",
                                        "Drag a box on the map to find places that look like it")
        self.find_action.setCheckable(True)
        self.build_action = self._action("rsirBuildIndex", "Build index...", "gui/icons/build.png",
                                         "Index the project's rasters for similarity search")
        self.compare_action = self._action("rsirCompareDates", "Compare dates...", "gui/icons/compare.png",
                                           "Where did it change between two dates, or change like a place "
                                           "you mark?")
        self.chips_action = self._action("rsirExportChips", "Export training chips...", "icon.png",
                                         "Write the labelled boxes as image chips to fine-tune the model on "
                                         "(README: Teach rsir your target)")
        self.diagnostics_action = self._action("rsirDiagnostics", "Diagnostics...", "icon.png",
                                               "Versions, packages, devices and models rsir finds, to copy "
                                               "into a bug report")

        self.map_tool = BoxMapTool(canvas)
        self.map_tool.setAction(self.find_action)  # QGIS unchecks the action when another tool takes over
        self.dock = ResultsDock(self.find_action, window)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        # Shown on first use so the panel is found; after that as the user left it.
        self.dock.setVisible(QgsSettings().value(DOCK_VISIBLE_KEY, True, type=bool))
        self.dock_action = self.dock.toggleViewAction()
        self.dock_action.setObjectName("rsirShowResults")
        self.dock_action.setIcon(QIcon(str(HERE / "icon.png")))
        self.dock_action.setText("Results panel")

        self.search = SearchController(self.iface, self.dock, self.dependencies.ready)
        self.build = BuildController(self.iface, self.dependencies.ready)
        self.change = ChangeController(self.iface, self.dependencies.ready, lambda: self.search.index_dir())
        self.find_action.toggled.connect(self._on_find_toggled)
        self.build_action.triggered.connect(self.build.open_dialog)
        self.compare_action.triggered.connect(self.change.open_dialog)
        self.diagnostics_action.triggered.connect(self.show_diagnostics)
        self.chips_action.triggered.connect(self.export_chips)
        self.map_tool.boxDrawn.connect(self.search.search)
        self.map_tool.boxLabelled.connect(self.search.label_box)
        self.build.indexBuilt.connect(self.search.show_index)
        self.build.newHits.connect(self.search.show_new_hits)

        self.toolbar = self.iface.addToolBar("rsir")
        self.toolbar.setObjectName("rsirToolbar")
        for action in (self.find_action, self.build_action, self.compare_action, self.dock_action):
            self.toolbar.addAction(action)
            self.iface.addPluginToRasterMenu(MENU, action)
        self.iface.addPluginToRasterMenu(MENU, self.chips_action)  # menu only
        self.iface.addPluginToRasterMenu(MENU, self.diagnostics_action)  # menu only
        self.dependencies.ready()  # a message with an install button when packages are missing

    def unload(self) -> None:
        from .core.cache import release_shared

        self._stop_tasks()
        release_shared()  # the tasks are done: free the onnxruntime sessions, close the open indexes
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.map_tool is not None:
            canvas = self.iface.mapCanvas()
            if canvas.mapTool() is self.map_tool:
                canvas.unsetMapTool(self.map_tool)
            self.map_tool.release()
            self.map_tool.deleteLater()
            self.map_tool = None
        if self.diagnostics is not None and not sip.isdeleted(self.diagnostics):
            self.diagnostics.close()
        self.diagnostics = None
        if self.change is not None:
            self.change.release()
            self.change = None
        for action in (self.find_action, self.build_action, self.compare_action, self.dock_action,
                       self.chips_action, self.diagnostics_action):
            if action is not None and not sip.isdeleted(action):
                self.iface.removePluginRasterMenu(MENU, action)
        if self.toolbar is not None:
            self.toolbar.deleteLater()  # its actions go with the toolbar's removal from the window
            self.toolbar = None
        if self.search is not None:
            self.search.disconnect_project()
            self.search = None
        if self.dock is not None:
            QgsSettings().setValue(DOCK_VISIBLE_KEY, self.dock.isVisibleTo(self.iface.mainWindow()))
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.dependencies is not None:
            self.dependencies.close()
            self.dependencies = None
        for action in self.actions:
            if not sip.isdeleted(action):
                action.deleteLater()
        self.actions = []
        self.build = None

    # Helpers -----------------------------------------------------------------------------

    def _action(self, name: str, text: str, icon: str, tip: str) -> QAction:
        action = QAction(QIcon(str(HERE / icon)), text, self.iface.mainWindow())
        action.setObjectName(name)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        self.actions.append(action)
        return action

    def show_diagnostics(self) -> None:
        """The Diagnostics window (one at a time: a second click brings it to the front)."""
        from .gui.diagnostics_dialog import DiagnosticsDialog

        if self.diagnostics is None or sip.isdeleted(self.diagnostics):
            self.diagnostics = DiagnosticsDialog(self.iface.mainWindow())
        self.diagnostics.show()
        self.diagnostics.raise_()
        self.diagnostics.activateWindow()

    def export_chips(self) -> None:
        """rsir:export_chips in Processing's dialog (it runs as a task there), the index in use filled in."""
        import processing

        index = self.search.index_dir() if self.search is not None else None
        processing.execAlgorithmDialog("rsir:export_chips", {"INDEX": str(index)} if index else {})

    def _on_find_toggled(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if checked:
            canvas.setMapTool(self.map_tool)
            self.dock.show()
            self.dock.raise_()
        elif canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)

    def _stop_tasks(self) -> None:
        """Cancel this plugin's tasks and wait for them, so no worker thread outlives the plugin."""
        tasks = []
        for owner in (self.search, self.build, self.change, self.dependencies, self.diagnostics):
            if owner is None:
                continue
            found = owner.running_tasks() if hasattr(owner, "running_tasks") else [getattr(owner, "task", None)]
            tasks += [t for t in found if is_active(t)]
        for task in tasks:
            for signal in (task.succeeded, task.failed, task.cancelled):
                with contextlib.suppress(TypeError):  # TypeError: nothing was connected
                    signal.disconnect()  # their slots belong to widgets about to be deleted
            task.cancel()
        for task in tasks:
            if is_active(task):
                task.waitForFinished(UNLOAD_WAIT_MS)

    def search_box(self, box: QgsRectangle, crs=None):
        """Run a search as if the box had been drawn (for the Python console and tests)."""
        crs = crs or self.iface.mapCanvas().mapSettings().destinationCrs()
        return self.search.search(box, crs)
