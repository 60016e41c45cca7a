"""rsir demo: index the bundled sample raster, query a parking lot, save and draw the hits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_qgis_plugin import cli  # noqa: E402  (after the path fix above)
from rsir_qgis_plugin.core.hits_io import QUERY_LAYER, HITS_LAYER, write_hits  # noqa: E402
from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.params import SearchParams  # noqa: E402
from rsir_qgis_plugin.core.search import search_box  # noqa: E402

SAMPLE = ROOT / "samples" / "oam_river_bridge.tif"
# The query: a box over the cars of the parking lot in the sample's north-east, centred on this pixel
# and as large as the default tiles (the model's input size in pixels), so query and tiles match.
QUERY_CENTRE = (1672, 542)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output", help="output folder")
    parser.add_argument("-k", type=int, default=10)
    return parser


def main(args) -> int:
    import rasterio

    args.out.mkdir(parents=True, exist_ok=True)
    index = args.out / "index"
    print(f"1. indexing {SAMPLE.name} with the bundled default model into {index}")
    if cli.main(["index", "build", str(index), str(SAMPLE)]) != 0:
        return 1
    size = read_model(None).contract.input_size
    col, row = QUERY_CENTRE[0] - size // 2, QUERY_CENTRE[1] - size // 2
    with rasterio.open(SAMPLE) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    print(f"2. querying the box {left:.1f} {bottom:.1f} {right:.1f} {top:.1f} ({src.crs})")
    result = search_box(index, SAMPLE, (left, bottom, right, top), None, SearchParams(k=args.k))
    hits_path = write_hits(result, args.out / "hits.gpkg")
    print(f"3. {len(result.hits)} hits in {result.seconds:.2f} s on {result.provider}, written to {hits_path}")
    for hit in result.hits:
        lon_min, lat_min, lon_max, lat_max = hit.bounds_4326
        print(f"   #{hit.rank:<2d} score {hit.score:.3f}  pixels {hit.window}  "
              f"lon {(lon_min + lon_max) / 2:.6f} lat {(lat_min + lat_max) / 2:.6f}")
    png = render(SAMPLE, hits_path, args.out / "hits.png")
    print(f"4. map of the query (blue) and hits (red, labelled by rank) rendered with QGIS to {png}")
    return 0


def render(raster: Path, hits: Path, png: Path) -> Path:
    """Draw the raster, the query box and the ranked hits with QGIS, headless."""
    from qgis.core import (QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings, QgsPalLayerSettings,
                           QgsRasterLayer, QgsTextBufferSettings, QgsTextFormat, QgsVectorLayer,
                           QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    app = QgsApplication([], False)
    app.initQgis()
    try:
        base = QgsRasterLayer(str(raster), "sample")
        found = QgsVectorLayer(f"{hits}|layername={HITS_LAYER}", "rsir hits", "ogr")
        query = QgsVectorLayer(f"{hits}|layername={QUERY_LAYER}", "query", "ogr")
        for layer, colour, width in ((found, "#e31a1c", 0.8), (query, "#1f78b4", 1.4)):
            if not layer.isValid():
                raise RuntimeError(f"{hits}: cannot open layer {layer.name()}")
            symbol = layer.renderer().symbol()
            symbol.symbolLayer(0).setBrushStyle(0)  # Qt.NoBrush: outline only
            symbol.symbolLayer(0).setStrokeColor(QColor(colour))
            symbol.symbolLayer(0).setStrokeWidth(width)
        labels = QgsPalLayerSettings()
        labels.fieldName = "rank"
        text = QgsTextFormat()
        text.setSize(11)
        text.setColor(QColor("white"))
        buffer = QgsTextBufferSettings()
        buffer.setEnabled(True)
        buffer.setColor(QColor("#e31a1c"))
        text.setBuffer(buffer)
        labels.setFormat(text)
        found.setLabeling(QgsVectorLayerSimpleLabeling(labels))
        found.setLabelsEnabled(True)

        settings = QgsMapSettings()
        settings.setLayers([query, found, base])
        settings.setDestinationCrs(base.crs())
        settings.setExtent(base.extent())
        settings.setOutputSize(QSize(1024, 1024))
        settings.setBackgroundColor(QColor("white"))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        if not job.renderedImage().save(str(png)):
            raise RuntimeError(f"{png}: cannot write the PNG")
    finally:
        app.exitQgis()
    return png


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
