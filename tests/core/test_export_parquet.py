"""GeoParquet export of an index (issue 10): real indexes of real imagery, read back with pyarrow and GDAL."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as reproject_points

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import Cancelled
from rsir_qgis_plugin.core.export_parquet import export_geoparquet
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import IndexReader
from tests.conftest import write_raster

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[2]
TILING = TilingParams(tile_px=96, stride_px=96)  # 384 px rasters: 16 tiles each
GEOMETRY_TYPES = {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
                  "GeometryCollection"}


def build(index_dir, rasters, model):
    build_index(BuildParams(index_dir=index_dir, rasters=tuple(rasters), model_path=model, tiling=TILING,
                            batch_size=16))
    return index_dir


def python(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def decode_polygon(wkb: bytes) -> np.ndarray:
    """The exterior ring (k, 2) of a little- or big-endian WKB polygon with one ring."""
    endian = "<" if wkb[0] == 1 else ">"
    kind, rings, points = struct.unpack_from(endian + "III", wkb, 1)
    assert (kind, rings) == (3, 1) and len(wkb) == 13 + 16 * points
    return np.array(struct.unpack_from(f"{endian}{2 * points}d", wkb, 13)).reshape(points, 2)


def expected_corners(raster: Path, window) -> np.ndarray:
    """The window's 4 pixel corners as lon/lat, computed from the file itself."""
    col, row, width, height = window
    with rasterio.open(raster) as src:
        xy = [src.transform * (c, r) for c, r in
              [(col, row), (col + width, row), (col + width, row + height), (col, row + height)]]
        lon, lat = reproject_points(src.crs, "EPSG:4326", [p[0] for p in xy], [p[1] for p in xy])
    return np.stack([lon, lat], axis=1)


def embeddings(table) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


def signed_area(ring: np.ndarray) -> float:
    p = ring - ring[0]
    return 0.5 * float(np.sum(p[:-1, 0] * p[1:, 1] - p[1:, 0] * p[:-1, 1]))


@pytest.fixture
def three_rasters(tmp_path, town_crop):
    """The real crop as it is (EPSG:3395, north up), stored south-up, and placed in EPSG:4326."""
    with rasterio.open(town_crop) as src:
        pixels, t = src.read(), src.transform
    south_up = write_raster(tmp_path / "south_up.tif", pixels[:, ::-1].copy(),
                            transform=Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * src.height))
    geographic = write_raster(tmp_path / "geographic.tif", pixels, crs="EPSG:4326",
                              transform=Affine(1e-6, 0, 120.98, 0, -1e-6, 14.6))
    return [town_crop, south_up, geographic]


def test_export_holds_every_tile_with_its_embedding_and_corners(tmp_path, tiny_model, three_rasters):
    index = build(tmp_path / "idx", three_rasters, tiny_model)
    out = tmp_path / "tiles.parquet"
    summary = export_geoparquet(index, out, batch=7)  # 48 tiles in row groups of 7: streamed
    assert (summary.tiles, summary.embedding_dim, summary.without_geometry) == (48, 512, 0)
    assert summary.warnings() == [] and "48 tiles (512-d embeddings)" in summary.describe()

    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_rows == 48 and parquet.metadata.num_row_groups == 7
    table = parquet.read()
    assert table.schema.field("embedding").type == pa.list_(pa.field("element", pa.float32(), False), 512)
    with IndexReader(index) as reader:
        tiles = reader.tiles(list(range(reader.size)))
        vectors = reader.vectors(list(range(reader.size)))
    assert table.column("tile_id").to_pylist() == [t.id for t in tiles] == list(range(48))
    np.testing.assert_array_equal(embeddings(table), vectors)
    assert table.column("raster").to_pylist() == [t.raster.path for t in tiles]
    windows = np.stack([table.column(name).to_numpy() for name in ("col", "row", "width", "height")], axis=1)
    assert [tuple(w) for w in windows] == [t.window for t in tiles]

    for tile, wkb, box in zip(tiles, table.column("geometry").to_pylist(), table.column("bbox").to_pylist()):
        ring = decode_polygon(wkb)
        assert len(ring) == 5 and (ring[0] == ring[-1]).all() and signed_area(ring) > 0  # closed, CCW
        corners = expected_corners(Path(tile.raster.path), tile.window)
        # The same 4 corners (the ring may start at another one, or run the other way round).
        distances = np.abs(ring[:4, None, :] - corners[None, :, :]).max(axis=2)
        assert distances.min(axis=1).max() < 1e-9 and distances.min(axis=0).max() < 1e-9
        lon_min, lat_min, lon_max, lat_max = tile.bounds_4326  # the catalog's envelope of the tile
        assert lon_min - 1e-9 <= ring[:, 0].min() and ring[:, 0].max() <= lon_max + 1e-9
        assert lat_min - 1e-9 <= ring[:, 1].min() and ring[:, 1].max() <= lat_max + 1e-9
        assert box == dict(zip(("xmin", "ymin", "xmax", "ymax"), [*ring.min(axis=0), *ring.max(axis=0)]))


def test_export_holds_only_live_tiles_of_an_index_of_several_segments(tmp_path, tiny_model, town_crop):
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    with rasterio.open(town_crop) as src:
        second = write_raster(tmp_path / "second.tif", src.read())
    build(index, [second], tiny_model)  # a second segment
    with IndexReader(index) as reader:
        replaced = [t.id for tiles, _ in reader.iter_tiles() for t in tiles
                    if t.raster.path == str(town_crop)]
    assert len(replaced) == 16
    os.utime(town_crop, ns=(1, 1))  # a changed file: its tiles are embedded again, the old ones tombstoned
    build(index, [], tiny_model)

    out = tmp_path / "tiles.parquet"
    assert export_geoparquet(index, out, batch=5).tiles == 32
    table = pq.read_table(out)
    ids = table.column("tile_id").to_pylist()
    assert len(ids) == len(set(ids)) == 32 and not set(ids) & set(replaced)
    pairs = list(zip(table.column("raster").to_pylist(), table.column("col").to_pylist(),
                     table.column("row").to_pylist()))
    assert sorted(pairs) == sorted((str(path), c, r) for path in (town_crop, second)
                                   for c in range(0, 384, 96) for r in range(0, 384, 96))
    with IndexReader(index) as reader:
        assert reader.size == 32
        stored = reader.vectors(ids)
    np.testing.assert_array_equal(embeddings(table), stored)


def test_geo_and_rsir_metadata(tmp_path, tiny_model, town_crop):
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    out = tmp_path / "tiles.parquet"
    export_geoparquet(index, out)
    file_keys = pq.read_metadata(out).metadata
    schema = pq.read_schema(out)
    geo = json.loads(file_keys[b"geo"])
    assert json.loads(schema.metadata[b"geo"]) == geo  # what pyarrow/GeoPandas and GDAL/DuckDB read agree

    # GeoParquet 1.1: required keys and their types; no "crs" means OGC:CRS84 (lon/lat, WGS 84).
    assert geo["version"] in ("1.0.0", "1.1.0") and geo["primary_column"] in schema.names
    column = geo["columns"][geo["primary_column"]]
    assert set(geo["columns"]) == {"geometry"} and column["encoding"] == "WKB"
    assert set(column["geometry_types"]) <= GEOMETRY_TYPES and column["geometry_types"] == ["Polygon"]
    assert "crs" not in column or isinstance(column["crs"], dict)
    assert column.get("orientation", "counterclockwise") == "counterclockwise"
    assert column.get("edges", "planar") in ("planar", "spherical")
    assert schema.field("geometry").type == pa.binary()
    for name, path in column["covering"]["bbox"].items():
        assert path == ["bbox", name] and schema.field("bbox").type.field(name).type == pa.float64()

    rings = np.concatenate([decode_polygon(w) for w in pq.read_table(out).column("geometry").to_pylist()])
    assert column["bbox"] == [*rings.min(axis=0), *rings.max(axis=0)]
    xmin, ymin, xmax, ymax = column["bbox"]
    assert 120 < xmin < xmax < 122 and 14 < ymin < ymax < 15  # the sample's place

    rsir = json.loads(file_keys[b"rsir"])
    with IndexReader(index) as reader:
        built_with = reader.manifest["model"]
    assert {k: rsir["model"][k] for k in ("name", "sha256", "embedding_dim")} == {
        k: built_with[k] for k in ("name", "sha256", "embedding_dim")}
    assert rsir["model"]["embedding_dim"] == schema.field("embedding").type.list_size == 512
    assert rsir["tile_count"] == 16 and "path" not in rsir["model"]


def test_tiles_of_a_raster_without_crs_keep_their_rows_with_null_geometry(tmp_path, tiny_model, town_crop):
    with rasterio.open(town_crop) as src:
        plain = write_raster(tmp_path / "plain.tif", src.read(), crs=None, transform=src.transform)
    index = build(tmp_path / "idx", [town_crop, plain], tiny_model)
    out = tmp_path / "tiles.parquet"
    summary = export_geoparquet(index, out)
    assert summary.tiles == 32 and summary.without_geometry == 16
    assert summary.warnings() == [
        f"{plain.resolve()}: has no CRS; its 16 tile(s) are exported with a null geometry"]

    table = pq.read_table(out)
    no_crs = np.array([path == str(plain.resolve()) for path in table.column("raster").to_pylist()])
    assert no_crs.sum() == 16
    geometry, bbox = table.column("geometry"), table.column("bbox")
    assert geometry.null_count == bbox.null_count == 16
    assert [g is None for g in geometry.to_pylist()] == list(no_crs)
    assert [b is None for b in bbox.to_pylist()] == list(no_crs)
    rings = np.concatenate([decode_polygon(g) for g in geometry.to_pylist() if g is not None])
    geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
    assert geo["columns"]["geometry"]["bbox"] == [*rings.min(axis=0), *rings.max(axis=0)]


def test_a_cancelled_export_leaves_the_previous_file(tmp_path, tiny_model, town_crop):
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    out = tmp_path / "tiles.parquet"
    export_geoparquet(index, out)
    before = out.read_bytes()
    batches = []
    with pytest.raises(Cancelled):
        export_geoparquet(index, out, batch=4, progress=lambda percent, _: batches.append(percent),
                          cancelled=lambda: len(batches) == 2)
    assert batches == [25.0, 50.0]
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "idx", "tiles.parquet", "town_crop.tif"]  # and no temporary file


def test_command_line_export(tmp_path, tiny_model, town_crop):
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    out = tmp_path / "tiles.parquet"
    done = python("-m", "rsir_qgis_plugin", "index", "export", index, "--geoparquet", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"exported 16 tiles (512-d embeddings) to {out}: ")
    assert "tiles/s" in done.stdout and pq.read_metadata(out).num_rows == 16

    missing = python("-m", "rsir_qgis_plugin", "index", "export", tmp_path / "none", "--geoparquet", out)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"rsir: error: {tmp_path / 'none'}: no rsir index here (no manifest.json); build one first"]
    folder = python("-m", "rsir_qgis_plugin", "index", "export", index, "--geoparquet", tmp_path)
    assert folder.returncode == 1 and folder.stderr.strip().splitlines() == [
        f"rsir: error: {tmp_path}: is a folder; give the path of the .parquet file to write"]


def test_without_pyarrow_the_plugin_loads_and_export_says_what_to_install(tmp_path, tiny_model, town_crop):
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    # sys.modules[name] = None makes Python's import machinery raise ImportError, as for a missing package.
    args = ["index", "export", str(index), "--geoparquet", str(tmp_path / "x.parquet")]
    done = python("-c", "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
                  "import rsir_qgis_plugin, rsir_qgis_plugin.cli, rsir_qgis_plugin.core.export_parquet\n"
                  f"sys.exit(rsir_qgis_plugin.cli.main({args!r}))")
    assert done.returncode == 1
    line, = done.stderr.strip().splitlines()
    assert line.startswith("rsir: error: missing Python package(s): pyarrow (needed for GeoParquet export")
    assert not (tmp_path / "x.parquet").exists()

    loaded = python("-c", "import sys, rsir_qgis_plugin.cli, rsir_qgis_plugin.core.export_parquet; "
                    "print('pyarrow' in sys.modules)")
    assert loaded.stdout.strip() == "False", loaded.stderr  # pyarrow is imported only by an export


def test_gdal_reads_the_export(tmp_path, tiny_model, town_crop):
    gdal = pytest.importorskip("osgeo.gdal")
    ogr = pytest.importorskip("osgeo.ogr")
    if ogr.GetDriverByName("Parquet") is None:
        pytest.skip(f"GDAL {gdal.__version__} here has no Parquet driver (built without Arrow)")
    index = build(tmp_path / "idx", [town_crop], tiny_model)
    out = tmp_path / "tiles.parquet"
    export_geoparquet(index, out)
    dataset = ogr.Open(str(out))
    layer = dataset.GetLayer(0)
    assert layer.GetFeatureCount() == 16
    assert layer.GetSpatialRef() is None or layer.GetSpatialRef().IsGeographic()
    feature = layer.GetNextFeature()
    ring = np.array(feature.GetGeometryRef().GetGeometryRef(0).GetPoints())[:, :2]
    assert np.allclose(ring, decode_polygon(bytes(pq.read_table(out).column("geometry")[0].as_py())))
