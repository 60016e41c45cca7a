"""Search through time on real imagery (issue 23): hot spots, search by change example, and one clear line for
rasters of different places; the bundled model (the tiny test model's untrained embeddings barely move when
a tile changes), real GeoTIFFs, the real index and FAISS."""
import numpy as np
import pytest
import rasterio
from rasterio.warp import calculate_default_transform, reproject

from rsir_qgis_plugin.core.change_params import ChangeParams
from rsir_qgis_plugin.core.change_rank import change_hotspots, search_change
from rsir_qgis_plugin.core.errors import RsirError, SearchCancelled
from rsir_qgis_plugin.core.examples import LabelledBox
from tests.conftest import DEFAULT_MODEL
from tests.core.change_data import (
    AT_A,
    AT_B,
    RIVER_A,
    RIVER_B,
    TILE,
    before_index,
    crop_pixels,
    overlaps,
    pasted,
    window_box,
    write_after,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The indexed before date, and an after date with river water pasted at AT_A and AT_B."""
    folder = tmp_path_factory.mktemp("change")
    index, before = before_index(folder, DEFAULT_MODEL)
    pixels, _ = crop_pixels()
    after = write_after(folder / "after.tif", pasted(pixels, (RIVER_A, AT_A), (RIVER_B, AT_B)))
    one = write_after(folder / "after_one.tif", pasted(pixels, (RIVER_A, AT_A)))
    return index, before, after, one


@pytest.mark.parametrize("hotspots", ["change", "unusual"])
def test_a_pasted_block_of_real_imagery_is_the_first_hot_spot(pair, hotspots):
    index, before, _, one = pair
    result = change_hotspots(index, [before], [one], ChangeParams(k=5, hotspots=hotspots))
    first = result.hits[0]
    assert first.hit.window == (*AT_A, TILE, TILE)
    assert first.before == str(before) and first.after == str(one) and first.after_window == (*AT_A, TILE, TILE)
    assert result.scoring == hotspots
    assert [hit.rank for hit in result.hits] == list(range(1, len(result.hits) + 1))
    assert all(a.score >= b.score for a, b in zip(result.hits, result.hits[1:]))
    counts = result.pairs[0]
    assert (counts.places, counts.compared, counts.nodata_after, counts.outside) == (49, 49, 0, 0)


def test_unchanged_places_score_no_change(pair):
    """A place away from the pasted block reads the same pixels at both dates: 1 - cosine is ~0 (a place that
    only touches it reads a pixel of it through the bilinear resampling at its edge)."""
    index, before, _, one = pair
    every = change_hotspots(index, [before], [one], ChangeParams(k=100, nms_iou=1.0))
    assert len(every.hits) == 49
    grown = (AT_A[0] - 1, AT_A[1] - 1)
    away = [hit.score for hit in every.hits if not overlaps(hit.hit.window, grown, TILE + 2)]
    near = [hit.score for hit in every.hits if overlaps(hit.hit.window, AT_A)]
    assert max(away) < 1e-4 < 0.05 < min(near)


def test_search_by_change_finds_the_second_block_of_the_same_kind_first(pair):
    index, before, after, _ = pair
    example = LabelledBox(raster=str(before), bbox=window_box(before, (*AT_A, TILE, TILE)), crs=None, positive=True)
    result = search_change(index, [before], [after], [example], ChangeParams(k=5))
    assert result.scoring == "cosine"
    assert overlaps(result.hits[0].hit.window, AT_B)
    assert not any(overlaps(hit.hit.window, AT_A) for hit in result.hits)  # the example's place is left out
    every = search_change(index, [before], [after], [example], ChangeParams(k=100, nms_iou=1.0))
    scores = {hit.hit.window: hit.score for hit in every.hits}
    unchanged = [s for w, s in scores.items() if not overlaps(w, AT_A) and not overlaps(w, AT_B)]
    assert scores[(*AT_B, TILE, TILE)] > max(unchanged)
    assert len(result.example_polygons) == 1 and result.examples.boxes == (example,)


def test_an_example_marked_on_the_after_raster_in_another_crs_is_the_same_example(pair):
    from rsir_qgis_plugin.core.geometry import reproject_bounds

    index, before, after, _ = pair
    with rasterio.open(after) as src:
        box = reproject_bounds(window_box(after, (*AT_A, TILE, TILE)), src.crs.to_wkt(), "EPSG:4326")
    example = LabelledBox(raster=str(after), bbox=box, crs="EPSG:4326", positive=True)
    result = search_change(index, [before], [after], [example], ChangeParams(k=3))
    assert overlaps(result.hits[0].hit.window, AT_B)


def test_several_examples_with_counter_examples_use_the_classifier(pair):
    index, before, after, _ = pair
    river = [LabelledBox(str(before), window_box(before, (*AT_A, TILE, TILE)), None, True),
             LabelledBox(str(before), window_box(before, (AT_A[0] + 48, AT_A[1], TILE, TILE)), None, True)]
    # Changes that are not wanted: the river block's edge seen from its other side, and a corner of it.
    others = [LabelledBox(str(before), window_box(before, (AT_A[0] - 48, AT_A[1] - 48, TILE, TILE)), None, False),
              LabelledBox(str(before), window_box(before, (AT_A[0] + 48, AT_A[1] + 48, TILE, TILE)), None, False)]
    result = search_change(index, [before], [after], river + others, ChangeParams(k=3))
    assert result.scoring == "probability"
    assert overlaps(result.hits[0].hit.window, AT_B)
    assert all(0.0 <= hit.score <= 1.0 for hit in result.hits)


def test_rasters_of_different_places_are_refused_in_one_line(pair, tmp_path):
    from affine import Affine

    index, before, _, _ = pair
    pixels, _ = crop_pixels()
    with rasterio.open(before) as src:
        far = Affine(*src.transform[:6]) * Affine.translation(0, 1_000_000)  # 100 km away (0.1 m pixels)
    elsewhere = write_after(tmp_path / "elsewhere.tif", pixels, transform=far)
    with pytest.raises(RsirError) as caught:
        change_hotspots(index, [before], [elsewhere], ChangeParams())
    message = str(caught.value)
    assert "\n" not in message and "do not overlap" in message
    assert str(before) in message and str(elsewhere) in message


def test_a_before_raster_not_in_the_index_and_the_same_raster_twice_are_refused(pair):
    index, before, after, _ = pair
    with pytest.raises(RsirError, match="not in the index"):
        change_hotspots(index, [after], [before], ChangeParams())
    with pytest.raises(RsirError, match="both a before and an after raster"):
        change_hotspots(index, [before], [before], ChangeParams())


def test_examples_off_the_pair_or_without_change_are_refused_by_name(pair, tmp_path):
    index, before, after, _ = pair
    unchanged = LabelledBox(str(before), window_box(before, (288, 288, TILE, TILE)), None, True)
    with pytest.raises(RsirError, match="example 1 .* looks the same at both dates"):
        search_change(index, [before], [after], [unchanged], ChangeParams())
    stranger = LabelledBox(str(tmp_path / "other.tif"), (0, 0, 1, 1), None, True)
    with pytest.raises(RsirError, match="neither a before nor an after raster"):
        search_change(index, [before], [after], [write_box_raster(tmp_path, stranger)], ChangeParams())
    with pytest.raises(RsirError, match="at least one example"):
        search_change(index, [before], [after], [], ChangeParams())


def write_box_raster(tmp_path, box: LabelledBox) -> LabelledBox:
    """The box on a real raster file that is not part of the pair."""
    pixels, _ = crop_pixels()
    write_after(tmp_path / "other.tif", pixels)
    return box


def test_nodata_at_the_after_date_is_skipped_and_counted(pair, tmp_path):
    index, before, _, _ = pair
    pixels = pasted(crop_pixels()[0], (RIVER_A, AT_A))
    pixels[:, :144] = 0  # rows 0-143 nodata: places of rows 0 and 48 are all nodata, row 96 half (kept)
    after = write_after(tmp_path / "holes.tif", pixels, nodata=0)
    result = change_hotspots(index, [before], [after], ChangeParams(k=100, nms_iou=1.0))
    counts = result.pairs[0]
    assert (counts.nodata_after, counts.compared, counts.places) == (14, 35, 49)
    assert all(hit.hit.window[1] >= 96 for hit in result.hits)
    assert "14 after" in counts.describe()


def test_an_after_date_on_another_grid_and_crs_is_read_on_the_places_footprints(pair, tmp_path):
    """The after raster reprojected to EPSG:3857 at 0.15 m: each place is read by its ground bounds."""
    index, before, _, one = pair
    with rasterio.open(one) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                                               *src.bounds, resolution=0.15)
        pixels = np.zeros((3, height, width), np.uint8)
        reproject(src.read(), pixels, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs="EPSG:3857")
    after = write_after(tmp_path / "after_3857.tif", pixels, crs="EPSG:3857", transform=transform, nodata=0)
    result = change_hotspots(index, [before], [after], ChangeParams(k=3))
    assert result.hits[0].hit.window == (*AT_A, TILE, TILE)
    assert result.pairs[0].compared >= 36  # the edges may fall on the reprojection's empty corners
    assert result.hits[0].after_crs_wkt and result.hits[0].after_window != (*AT_A, TILE, TILE)


def test_progress_and_cancel(pair, tmp_path):
    from rsir_qgis_plugin.core.pair_store import pair_name

    index, before, _, _ = pair
    pixels, _ = crop_pixels()
    after = write_after(tmp_path / "fresh.tif", pasted(pixels, (RIVER_B, AT_A)))
    with pytest.raises(SearchCancelled):
        change_hotspots(index, [before], [after], ChangeParams(batch_size=4), is_cancelled=lambda: True)
    assert not (index / "pairs" / pair_name(str(before), str(after))).exists()  # nothing kept of a cancelled pair
    seen = []
    change_hotspots(index, [before], [after], ChangeParams(batch_size=8), lambda p, m: seen.append((p, m)))
    assert seen[-1] == (100.0, "ranking places") and all(0 <= p <= 100 for p, _ in seen)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and "places" in seen[0][1]
    assert (index / "pairs" / pair_name(str(before), str(after))).is_file()
