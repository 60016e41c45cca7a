"""Write tests/data/naip_change_labels.gpkg: 12 changed and 12 unchanged places on the NAIP pair of 2009/2020.

The rasters are ../shared/data/rasters/naip_m_4709963_se_14_1_20090818.tif and ..._20200831.tif (USDA NAIP,
quarter quad m_4709963_se, North Dakota prairie potholes, 4 bands RGBN resampled to 5 m, EPSG:26914; the
2020 grid is offset by 1 m). Labelled once, by eye, before any change score was computed: both dates were
rendered side by side (bands 1-3, 1-99 % stretch) with a 32 px grid, candidate boxes of about 50 x 50 px
(250 m) drawn and viewed at 3x, and each kept only when its land cover clearly changed or clearly did not:

- changed: the land cover class changed over most of the box: grass or crop ploughed to bare soil, grass or
  crop flooded by the ponds that rose between the dates;
- unchanged: the same cover at both dates (a pond or lake that stayed water, a farmstead, grass or a
  vegetated field), whatever the colour shift between the two sensors and seasons.

Boxes of mixed or doubtful cover (a crop at another stage of growth, a pond that only changed its shore,
dry white grass turned green) were left out rather than guessed. The boxes are given here in pixels of the
2009 raster (col0, row0, col1, row1) and written in EPSG:26914 through its geotransform, so this script
needs neither raster.

    .venv/bin/python tests/data/make_naip_change_labels.py [--out tests/data/naip_change_labels.gpkg]
"""
from __future__ import annotations

import argparse
from pathlib import Path

OUT = Path(__file__).with_name("naip_change_labels.gpkg")
LAYER = "naip_change_labels"
EPSG = 26914
ORIGIN, PIXEL = (485900.0, 5209247.0), 5.0  # the 2009 raster's top-left corner and pixel size, metres

# name, label, what was seen (2009 -> 2020), box in 2009 pixels (col0, row0, col1, row1)
LABELS = [
    ("C1", "changed", "grass to bare soil", (85, 45, 150, 120)),
    ("C2", "changed", "crop to bare soil, shore flooded", (645, 400, 700, 470)),
    ("C3", "changed", "grass to bare soil", (490, 645, 545, 715)),
    ("C4", "changed", "grass to bare soil", (395, 630, 445, 680)),
    ("C5", "changed", "grass to bare soil", (850, 500, 920, 580)),
    ("C6", "changed", "grass and marsh to water", (590, 340, 650, 400)),
    ("C7", "changed", "grass to water", (760, 60, 820, 120)),
    ("C8", "changed", "crop to bare soil, lake kept", (700, 400, 760, 460)),
    ("C9", "changed", "grass and marsh to water", (800, 440, 860, 500)),
    ("C10", "changed", "crop to bare soil, lake grown", (65, 375, 115, 425)),
    ("C11", "changed", "crop to bare soil", (790, 372, 850, 420)),
    ("C12", "changed", "crop and grass to water", (660, 330, 720, 390)),
    ("U1", "unchanged", "pond", (330, 45, 380, 100)),
    ("U2", "unchanged", "pond", (350, 520, 390, 590)),
    ("U3", "unchanged", "farmstead and road", (0, 590, 50, 640)),
    ("U4", "unchanged", "lake", (420, 420, 490, 480)),
    ("U5", "unchanged", "lake", (10, 260, 80, 330)),
    ("U6", "unchanged", "pond in grass", (826, 26, 874, 104)),
    ("U7", "unchanged", "grass with a pond", (870, 650, 930, 700)),
    ("U8", "unchanged", "vegetated field with a wet swale", (360, 120, 440, 200)),
    ("U9", "unchanged", "grass with a pond", (840, 0, 900, 50)),
    ("U10", "unchanged", "pond in grass", (570, 645, 620, 700)),
    ("U11", "unchanged", "farmstead and pond", (495, 0, 545, 40)),
    ("U12", "unchanged", "vegetated field", (260, 530, 320, 590)),
]


def ground_box(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A box in 2009 pixels as (xmin, ymin, xmax, ymax) in EPSG:26914."""
    col0, row0, col1, row1 = box
    return (ORIGIN[0] + col0 * PIXEL, ORIGIN[1] - row1 * PIXEL, ORIGIN[0] + col1 * PIXEL, ORIGIN[1] - row0 * PIXEL)


def write(path: Path) -> None:
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    path.unlink(missing_ok=True)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer(LAYER, srs, ogr.wkbPolygon)
    for field in ("name", "label", "kind"):
        layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for name, label, kind, box in LABELS:
        xmin, ymin, xmax, ymax = ground_box(box)
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)):
            ring.AddPoint_2D(x, y)
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        feature = ogr.Feature(layer.GetLayerDefn())
        for field, value in (("name", name), ("label", label), ("kind", kind)):
            feature.SetField(field, value)
        feature.SetGeometry(polygon)
        layer.CreateFeature(feature)
    source = None  # closing flushes the file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    write(parser.parse_args().out)


if __name__ == "__main__":
    main()
