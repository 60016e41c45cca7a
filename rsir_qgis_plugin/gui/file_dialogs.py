"""The dock's file dialogs (hits and labels GeoPackages) start in the project's folder, else in the
folder last used for such a file, else in the home folder; never in QGIS's working directory."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProject, QgsSettings
from qgis.PyQt.QtWidgets import QFileDialog, QWidget

LAST_FOLDER_KEY = "rsir/last_file_folder"
GPKG_FILTER = "GeoPackage (*.gpkg)"


def start_folder(project: QgsProject | None = None) -> Path:
    """The project's folder (a saved project, or its preset home), else the last folder used, else home."""
    project = project or QgsProject.instance()
    for candidate in (project.homePath(), QgsSettings().value(LAST_FOLDER_KEY, "", type=str)):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path.home()


def remember_folder(path: str) -> None:
    QgsSettings().setValue(LAST_FOLDER_KEY, str(Path(path).parent))


def ask_save_gpkg(parent: QWidget, title: str, file_name: str) -> str:
    """A .gpkg path to write ('' when cancelled), suggested as `file_name` in the start folder."""
    path, _ = QFileDialog.getSaveFileName(parent, title, str(start_folder() / file_name), GPKG_FILTER)
    if not path:
        return ""
    path = path if path.lower().endswith(".gpkg") else path + ".gpkg"
    remember_folder(path)
    return path


def ask_open_gpkg(parent: QWidget, title: str) -> str:
    """A .gpkg path to read ('' when cancelled), browsed from the start folder."""
    path, _ = QFileDialog.getOpenFileName(parent, title, str(start_folder()), GPKG_FILTER)
    if path:
        remember_folder(path)
    return path
