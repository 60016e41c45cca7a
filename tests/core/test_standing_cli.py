"""`rsir search --save-as`, `rsir index build`'s line of new hits and `rsir searches list|show|remove`,
end to end in a subprocess as a user runs them."""
import json

from tests.conftest import write_town_crop
from tests.core.test_cli import rsir
from tests.core.test_standing import box_of, hits_in, write_other_crop


def test_save_build_list_show_remove(tmp_path, tiny_model):
    raster, index = write_town_crop(tmp_path), tmp_path / "idx"
    tiling = ("--tile-size", "96", "--stride", "48", "--model", tiny_model)
    rsir("index", "build", index, raster, *tiling)
    found = rsir("search", index, "--raster", raster, "--bbox", *box_of(raster, 96, 96, 96), "-k", "4",
                 "--save-as", "solar farms")
    assert len(json.loads(found.stdout)["features"]) == 4
    assert "search saved as 'solar farms'" in found.stderr
    again = rsir("search", index, "--raster", raster, "--bbox", *box_of(raster, 96, 96, 96),
                 "--save-as", "solar farms", check=False)
    assert again.returncode == 1 and "a saved search of that name exists" in again.stderr
    bad = rsir("search", index, "--raster", raster, "--bbox", *box_of(raster, 96, 96, 96),
               "--save-as", "../escape", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "search name '../escape'" in bad.stderr

    built = rsir("index", "build", index, raster, write_other_crop(tmp_path), *tiling)
    assert "4 new hits for 'solar farms'" in built.stdout
    assert len(hits_in(index / "searches" / "solar farms.new.gpkg")) == 4

    listed = rsir("searches", "list", index)
    assert listed.stdout.startswith("solar farms\tbox, cosine, k=4") and "solar farms.new.gpkg" in listed.stdout
    shown = rsir("searches", "show", index, "solar farms")
    assert "kind: box (cosine)" in shown.stdout and "2 raster(s) seen" in shown.stdout
    assert f"positive: {raster}" in shown.stdout

    (index / "searches" / "broken.json").write_text("{")
    assert "broken\tdamaged: " in rsir("searches", "list", index).stdout
    broken = rsir("searches", "show", index, "broken", check=False)
    assert broken.returncode == 1 and "broken.json: damaged saved search" in broken.stderr

    removed = rsir("searches", "remove", index, "solar farms")
    assert removed.stderr.count("removed ") == 2
    assert not (index / "searches" / "solar farms.json").exists()
    gone = rsir("searches", "show", index, "solar farms", check=False)
    assert gone.returncode == 1 and "no saved search of that name" in gone.stderr
