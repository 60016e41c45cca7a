"""What the user chose last time, kept in QgsSettings (per user) and in the project (index folder).

The dataclasses here hold raw widget values; `to_params` turns them into the engine's
parameter dataclasses, which are the only thing the engine ever sees.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from qgis.core import QgsProject, QgsSettings

from .core.params import BuildParams, SearchParams, TilingParams, parse_bands

PREFIX = "rsir/"
PROJECT_SCOPE = "rsir"
PROJECT_INDEX_KEY = "index_dir"
UNITS = ("px", "m")


@dataclass
class SearchSettings:
    """The dock's search options."""

    k: int = 20
    min_score: float = 0.0  # 0: no threshold (cosine scores of real matches are positive)
    tta: bool = False
    exclude_overlap: bool = True
    rerank: bool = True  # αQE, and the index's DBA vectors where it has them (SearchParams.rerank)

    def to_params(self) -> SearchParams:
        return SearchParams(k=self.k, tta=self.tta, exclude_query_overlap=self.exclude_overlap,
                            min_score=self.min_score if self.min_score > 0 else None, rerank=self.rerank)


@dataclass
class BuildSettings:
    """The build dialog's options; 0 for a size means "let the engine choose"."""

    tile_size: float = 0.0  # 0: the model's tile size (ModelContract.tile_px) in pixels
    stride: float = 0.0  # 0: half a tile
    unit: str = "px"  # applies to both tile size and stride
    bands: str = ""  # "1,2,3"; empty: RGB by colour interpretation
    device: str = "auto"
    model_path: str = ""  # empty: the bundled default model
    tta: bool = False  # each tile embedded as the mean of 4 rotations

    def tiling(self) -> TilingParams:
        size = self.tile_size or None
        stride = self.stride or None
        metres = self.unit == "m"
        return TilingParams(
            tile_px=None if metres or size is None else int(size),
            tile_m=size if metres else None,
            stride_px=None if metres or stride is None else int(stride),
            stride_m=stride if metres else None,
            bands=parse_bands(self.bands),
        )

    def to_params(self, index_dir: str | Path, rasters: list[str]) -> BuildParams:
        return BuildParams(index_dir=Path(index_dir), rasters=tuple(Path(r) for r in rasters),
                           model_path=Path(self.model_path) if self.model_path else None,
                           tiling=self.tiling(), device=self.device, tta=self.tta)


def band_problem(bands: tuple[int, ...] | None, rasters: Iterable[tuple[str, int]],
                 model_bands: int | None = None) -> str | None:
    """Why `bands` cannot be read from these (name, band count) rasters or fed to the model, or None.

    Checked before a build starts, so a wrong band list is explained at once instead of failing
    every raster of the build.
    """
    if bands is None:
        return None
    if model_bands is not None and len(bands) != model_bands:
        return (f"The model takes {model_bands} band(s); {','.join(map(str, bands))} gives {len(bands)}. "
                "Leave Bands empty for RGB by colour interpretation.")
    short = [(name, count) for name, count in rasters if max(bands) > count]
    if not short:
        return None
    named = "; ".join(f"'{name}' has {count} band(s)" for name, count in short[:3])
    more = f" (and {len(short) - 3} more)" if len(short) > 3 else ""
    return (f"Band {max(bands)} does not exist: {named}{more}. "
            "Leave Bands empty for RGB by colour interpretation.")


def _load(cls, group: str, settings: QgsSettings | None = None):
    """Read a dataclass from QgsSettings, falling back to its defaults field by field."""
    settings = settings or QgsSettings()
    values = {}
    for f in fields(cls):
        default = f.default
        values[f.name] = settings.value(PREFIX + group + "/" + f.name, default, type=type(default))
    return cls(**values)


def _save(obj, group: str, settings: QgsSettings | None = None) -> None:
    settings = settings or QgsSettings()
    for f in fields(obj):
        settings.setValue(PREFIX + group + "/" + f.name, getattr(obj, f.name))


def load_search_settings(settings: QgsSettings | None = None) -> SearchSettings:
    return _load(SearchSettings, "search", settings)


def save_search_settings(values: SearchSettings, settings: QgsSettings | None = None) -> None:
    _save(values, "search", settings)


def load_build_settings(settings: QgsSettings | None = None) -> BuildSettings:
    loaded = _load(BuildSettings, "build", settings)
    if loaded.unit not in UNITS:
        loaded.unit = "px"
    try:  # a value saved by an older version, or edited by hand, must not block every build
        parse_bands(loaded.bands)
    except ValueError:
        loaded.bands = ""
    return loaded


def save_build_settings(values: BuildSettings, settings: QgsSettings | None = None) -> None:
    _save(values, "build", settings)


def default_index_dir(project: QgsProject | None = None) -> Path:
    """Next to the project file (<project>_rsir_index), else in the home folder."""
    project = project or QgsProject.instance()
    project_file = project.fileName()
    if project_file:
        path = Path(project_file)
        return path.with_name(path.stem + "_rsir_index")
    return Path.home() / "rsir_index"


def project_index_dir(project: QgsProject | None = None) -> Path:
    """The index this project searches: stored in the project, else the last one used, else the default."""
    project = project or QgsProject.instance()
    stored, ok = project.readEntry(PROJECT_SCOPE, PROJECT_INDEX_KEY, "")
    if ok and stored:
        return Path(stored)
    if project.fileName():
        return default_index_dir(project)
    last = QgsSettings().value(PREFIX + "last_index_dir", "", type=str)
    return Path(last) if last else default_index_dir(project)


def remember_index_dir(index_dir: str | Path, project: QgsProject | None = None) -> None:
    project = project or QgsProject.instance()
    project.writeEntry(PROJECT_SCOPE, PROJECT_INDEX_KEY, str(index_dir))
    QgsSettings().setValue(PREFIX + "last_index_dir", str(index_dir))
