"""Scale-aware search (issue 22 item 3): where the index holds tiles of several ground sizes, a query is
embedded once per ground size and each raster's tiles are ranked against it at their scale.

The index: the same real imagery (the town raster, 0.1 m) written as two rasters, at 0.1 m and resampled to
0.3 m, placed 1 km apart; both tiled in 64 px, so their tiles cover 6.4 m and 19.2 m of ground. A box on
the fine raster finds the same place on the coarse one first only when it is embedded at the coarse
tiles' ground size too. On an index of one ground size nothing changes: the rankings equal those of the
search before scales, computed here step by step from the same engine's building blocks.
"""
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from rsir_qgis_plugin.core import ranking
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.embedder import shared_embedder
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.query_expansion import reranked
from rsir_qgis_plugin.core.query_image import plan_image_query
from rsir_qgis_plugin.core.query_step import ScaleQuery, box_window, index_reader, model_for, query_areas, read_box
from rsir_qgis_plugin.core.ranking import by_scale, rank
from rsir_qgis_plugin.core.raster import describe, open_dataset
from rsir_qgis_plugin.core.scales import scale_groups, tile_scales
from rsir_qgis_plugin.core.search import search_box, search_image
from rsir_qgis_plugin.core.tiling import read_window
from tests.conftest import town_pixels, write_raster

TILE, STRIDE = 64, 32
FINE_PX, FACTOR = 384, 3
X0, Y0 = 13467600.0, 1632000.0  # top-left corner of the fine raster (EPSG:3395 metres)
COARSE_X0 = X0 + 1000.0  # the coarse copy lies 1 km east: another place to the overlap rules
# The query: a 64 px box (one fine tile, 6.4 m) centred on fine pixel (192, 192), which is the centre of the
# coarse tile at coarse pixels (32, 32): the 19.2 m around the box's centre.
BOX_PX = (160, 160, 64, 64)
COARSE_MATCH = (32, 32, TILE, TILE)


def fine_box() -> tuple[float, float, float, float]:
    col, row, w, h = BOX_PX
    return X0 + col * 0.1, Y0 - (row + h) * 0.1, X0 + (col + w) * 0.1, Y0 - row * 0.1


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(folder, fine, coarse): a real 384 px crop of the town raster at 0.1 m, and the same ground
    resampled to 128 px at 0.3 m (averaging, as a coarser sensor sees it)."""
    folder = tmp_path_factory.mktemp("scale_aware")
    pixels, profile = town_pixels()
    crop = pixels[:, 256:256 + FINE_PX, 512:512 + FINE_PX].copy()
    fine = write_raster(folder / "fine.tif", crop, crs=profile["crs"], transform=from_origin(X0, Y0, 0.1, 0.1))
    with rasterio.open(fine) as src:
        side = FINE_PX // FACTOR
        coarse_pixels = src.read(out_shape=(3, side, side), resampling=Resampling.average)
    coarse = write_raster(folder / "coarse.tif", coarse_pixels, crs=profile["crs"],
                          transform=from_origin(COARSE_X0, Y0, 0.1 * FACTOR, 0.1 * FACTOR))
    return folder, fine, coarse


@pytest.fixture(scope="module")
def two_scales(rasters, tiny_model) -> Path:
    folder, fine, coarse = rasters
    build_index(BuildParams(index_dir=folder / "idx2", rasters=(fine, coarse), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=STRIDE)))
    return folder / "idx2"


@pytest.fixture(scope="module")
def one_scale(rasters, tiny_model) -> Path:
    """The fine raster and a second raster of the same ground size (its left-right mirror, elsewhere)."""
    folder, fine, _ = rasters
    with rasterio.open(fine) as src:
        mirrored = src.read()[:, :, ::-1].copy()
    other = write_raster(folder / "mirror.tif", mirrored, crs=src.crs, transform=from_origin(X0, Y0 - 1000, 0.1, 0.1))
    build_index(BuildParams(index_dir=folder / "idx1", rasters=(fine, other), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=STRIDE)))
    return folder / "idx1"


def test_tiles_ground_sizes_are_derived_from_the_catalog_and_grouped(two_scales, one_scale):
    groups = scale_groups(index_reader(two_scales))
    assert [round(g.size, 3) for g in groups] == [6.4, 19.2]
    assert [g.tiles for g in groups] == [121, 9]
    assert len(scale_groups(index_reader(one_scale))) == 1


def test_a_box_finds_the_same_place_at_another_scale_first_only_when_scale_aware(two_scales, rasters):
    _, fine, coarse = rasters
    for rerank in (False, True):
        aware = search_box(two_scales, fine, fine_box(), None, SearchParams(k=5, rerank=rerank)).hits
        assert (aware[0].raster, aware[0].window) == (str(coarse), COARSE_MATCH), rerank
        plain = search_box(two_scales, fine, fine_box(), None,
                           SearchParams(k=5, rerank=rerank, scale_aware=False)).hits
        assert (plain[0].raster, plain[0].window) != (str(coarse), COARSE_MATCH), rerank


def test_an_image_with_image_gsd_is_embedded_at_each_scale(two_scales, rasters):
    folder, fine, coarse = rasters
    # A plain PNG (no georeferencing) of the 192 px around fine pixel (192, 192): 19.2 m at 0.1 m a pixel.
    with rasterio.open(fine) as src:
        part = src.read(window=((96, 288), (96, 288)))
    png = folder / "query.png"
    with rasterio.open(png, "w", driver="PNG", width=192, height=192, count=3, dtype="uint8") as dst:
        dst.write(part)
    plan = plan_image_query(index_reader(two_scales), describe(str(png), None, 3), 0.1)
    assert plan.window == (64, 64, 64, 64)  # the tiles' median size (the fine group): 6.4 m of its centre
    assert [s.window for s in plan.scales] == [(0, 0, 192, 192)]  # the coarse group's 19.2 m: all of it
    hits = search_image(two_scales, png, SearchParams(k=10, rerank=False), image_gsd=0.1).hits
    assert (hits[0].raster, hits[0].window) == (str(fine), BOX_PX)
    first_coarse = next(hit for hit in hits if hit.raster == str(coarse))
    assert first_coarse.window == COARSE_MATCH and first_coarse.rank <= 2
    plain = search_image(two_scales, png, SearchParams(k=10, rerank=False, scale_aware=False), image_gsd=0.1)
    assert all((h.raster, h.window) != (str(coarse), COARSE_MATCH) for h in plain.hits[:2])


def _before_scales_box(index, raster, bbox, params: SearchParams):
    """search_box as it was before scales: the box read once, embedded, re-ranked, ranked."""
    reader = index_reader(index)
    model = model_for(reader, params)
    source, window = box_window(reader, model, raster, bbox, None)
    query = shared_embedder(model, params.device).embed(read_box(source, window, model.contract.input_size,
                                                                 bbox)[None])[0]
    areas = query_areas(source, [window])
    return rank(reader, reranked(reader, query, params, areas, None), params, areas, None)[0]


def _before_scales_image(index, image, params: SearchParams, gsd):
    reader = index_reader(index)
    model = model_for(reader, params)
    source = describe(str(image), None, 3)
    with open_dataset(source.path) as dataset:
        tile, _ = read_window(dataset, source, plan_image_query(reader, source, gsd).window,
                              model.contract.input_size)
    query = shared_embedder(model, params.device).embed(tile[None])[0]
    return rank(reader, reranked(reader, query, params, [], None), params, [], None)[0]


@pytest.mark.parametrize("rerank", [False, True])
def test_one_ground_size_ranks_exactly_as_before(one_scale, rasters, rerank):
    folder, fine, coarse = rasters
    params = SearchParams(k=15, rerank=rerank)
    boxes = [fine_box(), (X0 + 5.0, Y0 - 30.0, X0 + 25.0, Y0 - 10.0)]  # one tile; a larger box elsewhere
    for box in boxes:
        now = search_box(one_scale, fine, box, None, params).hits
        assert [(h.tile_id, h.score) for h in now] == [(h.tile_id, h.score)
                                                       for h in _before_scales_box(one_scale, fine, box, params)]
    # an image of known scale (the coarse raster: not indexed here, 0.3 m) and one of unknown scale
    for gsd in (None, 0.5):
        now = search_image(one_scale, coarse, params, image_gsd=gsd).hits
        before = _before_scales_image(one_scale, coarse, params, gsd)
        assert [(h.tile_id, h.score) for h in now] == [(h.tile_id, h.score) for h in before]
    assert np.isfinite([h.score for h in now]).all()


def test_the_command_line_searches_scale_aware_unless_told_not_to(two_scales, rasters, capsys):
    import json

    from rsir_qgis_plugin import cli

    _, fine, coarse = rasters
    left, bottom, right, top = fine_box()
    query = ["search", str(two_scales), "--raster", str(fine), "--bbox", *map(str, (left, bottom, right, top)),
             "-k", "5"]
    first = []
    for extra in ([], ["--no-scale-aware"]):
        assert cli.main(query + extra) == 0
        features = json.loads(capsys.readouterr().out)["features"]
        first.append(next(f["properties"]["raster"] for f in features if f["properties"]["rank"] == 1))
    assert first == [str(coarse), str(fine)]


def test_a_small_scale_is_scored_exactly_as_the_widened_faiss_search_ranks_it(two_scales, monkeypatch):
    """A scale of few tiles is scored tile by tile (ranking.exact_source) instead of widening FAISS's k:
    on this flat index both give the same tiles in the same order with the same scores, for both parts."""
    reader = index_reader(two_scales)
    coarse = next(iter(scale_groups(reader)[1].rasters))
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2, reader.dim)).astype(np.float32)
    parts = [ScaleQuery(v / np.linalg.norm(v), rasters) for v, rasters in zip(vectors, (frozenset({coarse}), None))]
    exact = by_scale(reader, parts)(40)
    monkeypatch.setattr(ranking, "EXACT_SCALE_TILES", 0)
    widened = by_scale(reader, parts)(40)
    assert len(exact[1]) == 40
    np.testing.assert_array_equal(exact[1], widened[1])
    np.testing.assert_allclose(exact[0], widened[0], atol=1e-5)
    for only, expected in ((0, {coarse}), (1, set(reader.rasters) - {coarse})):
        ids = by_scale(reader, parts, only=only)(200)[1]
        assert set(tile_scales(reader).rasters_of(ids).tolist()) == expected
