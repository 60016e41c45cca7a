"""Alpha query expansion (αQE) at query time (issue 22 item 1): the maths against a brute-force numpy
computation on real FAISS neighbours, the engine's box and image searches against the same computation on
a mosaic of real scenes, and the expansion never drawing on tiles that overlap the query box."""
import numpy as np
import pytest

from rsir_qgis_plugin.core.expansion import ALPHA, NEIGHBOURS, alpha_weights, expand, expand_rows
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.query_expansion import expanded_query, expansion_neighbours
from rsir_qgis_plugin.core.query_step import query_areas
from rsir_qgis_plugin.core.search import search_box, search_image
from rsir_qgis_plugin.core.store import IndexReader, faiss_module
from tests.core.scene_mosaic import SCENE, indexed_scene_mosaic
from tests.core.test_search_overlap import centre_box, ogr_polygon
from tests.core.test_search_overlap import same_ground as three_rasters_of_one_ground


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """40 real AID scenes in cells of one raster, one tile a scene (no two tiles overlap), bundled model."""
    return indexed_scene_mosaic(tmp_path_factory.mktemp("rerank"), float(SCENE))


def scene_vectors(index):
    with IndexReader(index) as reader:
        return reader.vectors(np.arange(reader.size))


def brute_force_aqe(query: np.ndarray, database: np.ndarray, excluded: set[int]) -> np.ndarray:
    """q' = (q + sum over the top 10 other rows of max(s, 0)^3 x row) / norm, written out in numpy."""
    sims = database @ query
    order = [i for i in np.argsort(-sims, kind="stable") if i not in excluded][:10]
    expanded = query.astype(np.float64) + sum(max(sims[i], 0.0) ** 3 * database[i] for i in order)
    return expanded / np.linalg.norm(expanded)


def test_alpha_weights_ignore_missing_and_opposed_neighbours():
    weights = alpha_weights(np.array([0.5, -0.4, np.nan, 1.0]), 3.0)
    assert weights.tolist() == [0.125, 0.0, 0.0, 1.0]
    assert (NEIGHBOURS, ALPHA) == (10, 3.0)  # the measured setting


def test_expansion_by_real_faiss_neighbours_is_the_numpy_formula(mosaic):
    vectors = scene_vectors(mosaic[1])
    faiss = faiss_module()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    sims, ids = flat.search(vectors, NEIGHBOURS + 1)  # each scene first finds itself
    rows = expand_rows(vectors, vectors[ids[:, 1:]], sims[:, 1:])
    for i in range(len(vectors)):
        expected = brute_force_aqe(vectors[i], vectors, {i})
        assert np.abs(rows[i] - expected).max() < 1e-5
        assert np.abs(expand(vectors[i], vectors[ids[i, 1:]], sims[i, 1:]) - rows[i]).max() < 1e-6
    # Rows with fewer neighbours (NaN similarities) count only those they have; none: the row itself.
    short = sims[:, 1:].copy()
    short[:, 3:] = np.nan
    partial = expand_rows(vectors, vectors[ids[:, 1:]], short)
    manual = vectors[0] + (alpha_weights(sims[0, 1:4])[:, None] * vectors[ids[0, 1:4]]).sum(0)
    assert np.abs(partial[0] - manual / np.linalg.norm(manual)).max() < 1e-6
    assert np.array_equal(expand(vectors[0], vectors[:0], sims[0, :0]), vectors[0])


def test_a_box_query_is_ranked_by_the_expanded_query_and_without_rerank_by_the_query_alone(mosaic):
    path, index, classes, transform = mosaic
    vectors = scene_vectors(index)
    with IndexReader(index) as reader:
        cells = [reader.tiles([i])[0].window[:2] for i in range(reader.size)]
    for tile_id in (0, 17, 33):
        left, top = transform * cells[tile_id]
        box = (left, top - SCENE, left + SCENE, top)
        plain = search_box(index, path, box, None, SearchParams(k=39, rerank=False))
        reranked = search_box(index, path, box, None, SearchParams(k=39))
        query = vectors[tile_id]  # the box is that tile's cell: its embedding is the stored one
        assert plain.hits[0].score == pytest.approx(float(np.sort(np.delete(vectors @ query, tile_id))[-1]),
                                                    abs=1e-4)
        expanded = brute_force_aqe(query, vectors, {tile_id})
        expected = np.argsort(-(vectors @ expanded), kind="stable")
        expected = [int(i) for i in expected if i != tile_id]
        assert [h.tile_id for h in reranked.hits][:10] == expected[:10]
        assert [h.score for h in reranked.hits] == pytest.approx(
            [float(vectors[i] @ expanded) for i in expected], abs=1e-4)
        assert [h.tile_id for h in plain.hits] != [h.tile_id for h in reranked.hits]


def test_an_image_query_is_expanded_too(mosaic, tmp_path):
    import rasterio

    path, index, _, _ = mosaic
    vectors = scene_vectors(index)
    with IndexReader(index) as reader:
        col, row = reader.tiles([5])[0].window[:2]
    with rasterio.open(path) as src:
        pixels = src.read(window=rasterio.windows.Window(col, row, SCENE, SCENE))
    image = tmp_path / "scene.png"
    with rasterio.open(image, "w", driver="PNG", width=SCENE, height=SCENE, count=3, dtype="uint8") as dst:
        dst.write(pixels)
    result = search_image(index, image, SearchParams(k=10))
    # No query box on the index: the scene's own tile is the first neighbour of its expansion.
    expanded = brute_force_aqe(vectors[5], vectors, set())
    # The PNG is read through another path than the mosaic's tiles: its embedding differs in the 4th digit,
    # so near ties may swap. The scores must be the expanded query's, the best ones.
    assert [h.score for h in result.hits] == pytest.approx([float(vectors[h.tile_id] @ expanded)
                                                            for h in result.hits], abs=2e-3)
    assert [h.score for h in result.hits] == pytest.approx(np.sort(vectors @ expanded)[::-1][:10], abs=2e-3)
    assert result.hits[0].tile_id != 5  # the expansion moved the query off the scene's own tile


same_ground = pytest.fixture(three_rasters_of_one_ground.__wrapped__)


def test_the_expansion_leaves_out_tiles_overlapping_the_query_box_on_the_ground(same_ground):
    """Three rasters of the same ground: the crop, a byte copy and a UTM warp; 96 px tiles every 48 px."""
    index, rasters = same_ground
    box = centre_box(rasters["crop"], 96)
    with IndexReader(index) as reader:
        entry = next(r for r in reader.rasters.values() if r.path == str(rasters["crop"].resolve()))
        window = (144, 144, 96, 96)
        query = reader.vectors([reader.tile_at(entry, window)])[0]
        areas = query_areas(entry, [window])
        params = SearchParams()
        neighbours = expansion_neighbours(reader, query, params, areas, None)
        assert 5 <= len(neighbours) <= NEIGHBOURS  # 49 tiles a raster: 9 places left once NMS has thinned them
        query_polygon = ogr_polygon(list(zip(*_corners(box))), entry.crs_wkt, entry.crs_wkt)
        for hit in neighbours:
            assert ogr_polygon(hit.polygon, hit.crs_wkt, entry.crs_wkt).Intersection(query_polygon).Area() < 1e-6
        assert np.abs(expanded_query(reader, query, params, areas, None) - expand(
            query, reader.vectors([h.tile_id for h in neighbours]), np.array([h.score for h in neighbours]))).max() == 0
        # The check can fail: without the exclusion the query's own place (its tile, the twin's) comes first.
        kept = expansion_neighbours(reader, query, params, [], None)
        assert kept[0].score == pytest.approx(1.0, abs=1e-4)
        assert ogr_polygon(kept[0].polygon, kept[0].crs_wkt, entry.crs_wkt).Intersection(query_polygon).Area() > 0


def _corners(box):
    left, bottom, right, top = box
    return [left, right, right, left], [top, top, bottom, bottom]
