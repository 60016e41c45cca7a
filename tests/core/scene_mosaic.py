"""A georeferenced mosaic of the 40 real AID scenes in tests/data/scenes (4 classes x 10), for
retrieval-quality tests: each scene fills one cell of a UTM raster at 1 m/pixel, in shuffled order.
The writer is benchmarks/scene_mosaic.py's, shared with benchmarks/ood_mosaic.py."""
from pathlib import Path

from benchmarks.scene_mosaic import cell_class, scene_files, write_mosaic
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from tests.conftest import DATA

SCENE = 150  # pixels (= metres) per scene cell: the AID crops' own size, so no scene is resampled
COLUMNS = 8
ORIGIN = (500_000.0, 4_000_000.0)  # top-left corner, EPSG:32633


def write_scene_mosaic(path: Path):
    """Write the mosaic GeoTIFF; returns {(col, row) of each cell's top-left pixel: class} and the transform."""
    return write_mosaic(scene_files(DATA / "scenes"), path, SCENE, 1.0, ORIGIN, "EPSG:32633", COLUMNS)


def scene_class(classes: dict, col: int, row: int) -> str:
    """The class of the scene holding pixel (col, row)."""
    return cell_class(classes, col, row, SCENE)


def indexed_scene_mosaic(folder: Path, tile_m: float):
    """The mosaic in `folder`, indexed there with the bundled model in square tiles of `tile_m` metres:
    (mosaic path, index folder, classes, transform)."""
    path = folder / "mosaic.tif"
    classes, transform = write_scene_mosaic(path)
    index = folder / "idx"
    summary = build_index(BuildParams(index_dir=index, rasters=(path,), model_path=DEFAULT_MODEL_PATH,
                                      tiling=TilingParams(tile_m=tile_m, stride_m=tile_m)))
    assert summary.tiles_total == len(classes) * (SCENE // int(tile_m)) ** 2
    return path, index, classes, transform
