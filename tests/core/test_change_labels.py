"""The committed labels of the NAIP pair (tests/data/naip_change_labels.gpkg, issue 23 item 6) are what their
script says: 12 changed and 12 unchanged places on the 2009 raster's footprint, in EPSG:26914."""
from osgeo import ogr

from tests.conftest import DATA
from tests.data.make_naip_change_labels import LABELS, LAYER, ground_box

NAIP_2009 = (485900.0, 5205627.0, 490570.0, 5209247.0)  # the raster's bounds (934 x 724 px of 5 m)


def test_the_labels_file_holds_the_scripts_places():
    ogr.UseExceptions()
    source = ogr.Open(str(DATA / "naip_change_labels.gpkg"))
    layer = source.GetLayerByName(LAYER)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "26914"
    found = {}
    for feature in layer:
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        box = (xmin, ymin, xmax, ymax)
        found[feature.GetField("name")] = (feature.GetField("label"), feature.GetField("kind"), box)
    assert found == {name: (label, kind, ground_box(box)) for name, label, kind, box in LABELS}
    labels = [label for label, _, _ in found.values()]
    assert labels.count("changed") == 12 and labels.count("unchanged") == 12
    for _, _, (xmin, ymin, xmax, ymax) in found.values():
        assert NAIP_2009[0] <= xmin < xmax <= NAIP_2009[2] and NAIP_2009[1] <= ymin < ymax <= NAIP_2009[3]
        assert min(xmax - xmin, ymax - ymin) >= 200  # 40 px of 5 m: a place, not a pixel
