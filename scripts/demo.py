"""rsir demo: index the bundled sample raster, query a parking lot, save and draw the hits."""
from __future__ import annotations

import argparse
import gc
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_qgis_plugin import cli  # noqa: E402  (after the path fix above)
from rsir_qgis_plugin.core.hits_io import HITS_LAYER, QUERY_LAYER, write_hits  # noqa: E402
from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.params import SearchParams  # noqa: E402
from rsir_qgis_plugin.core.search import search_box  # noqa: E402

SAMPLE = ROOT / "samples" / "oam_river_bridge.tif"
# The query: a box over the cars of the parking lot in the sample's north-east, centred on this pixel
# and as large as the default tiles (the model's input size in pixels), so query and tiles match.
QUERY_CENTRE = (1672, 542)
QUERY_COLOUR, HIT_COLOUR = "#1f78b4", "#e31a1c"
MAP_MM, PANEL_MM = 240, 88  # the map's width and the side panel's (legend, note, hit table)


@dataclass(frozen=True)
class MapNote:
    """What the map's title and legend say about the search."""

    raster: str
    k: int
    hits: int
    model: str


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output", help="output folder")
    parser.add_argument("-k", type=int, default=10, help="number of hits")
    return parser


def main(args) -> int:
    import rasterio

    args.out.mkdir(parents=True, exist_ok=True)
    index = args.out / "index"
    print(f"1. indexing {SAMPLE.name} with the bundled default model into {index}")
    if cli.main(["index", "build", str(index), str(SAMPLE)]) != 0:
        return 1
    contract = read_model(None).contract
    size = contract.input_size
    col, row = QUERY_CENTRE[0] - size // 2, QUERY_CENTRE[1] - size // 2
    with rasterio.open(SAMPLE) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    print(f"2. querying the box {left:.1f} {bottom:.1f} {right:.1f} {top:.1f} ({src.crs})")
    result = search_box(index, SAMPLE, (left, bottom, right, top), None, SearchParams(k=args.k))
    hits_path = write_hits(result, args.out / "hits.gpkg")
    print(f"3. {len(result.hits)} hits in {result.seconds:.2f} s on {result.provider}, "
          f"written to {hits_path}")
    for hit in result.hits:
        lon_min, lat_min, lon_max, lat_max = hit.bounds_4326
        print(f"   #{hit.rank:<2d} score {hit.score:.3f}  pixels {hit.window}  "
              f"lon {(lon_min + lon_max) / 2:.6f} lat {(lat_min + lat_max) / 2:.6f}")
    note = MapNote(raster=SAMPLE.name, k=args.k, hits=len(result.hits), model=contract.name)
    png = render(SAMPLE, hits_path, args.out / "hits.png", note)
    if png is None:
        return 1
    print(f"4. map of the query (blue) and hits (red, labelled '#rank score'), with legend and hit table, "
          f"rendered with QGIS to {png}")
    return 0


def render(raster: Path, hits: Path, png: Path, note: MapNote) -> Path | None:
    """Draw the raster, the query box and the ranked hits with QGIS, headless; None if that failed.

    Every QGIS object lives in `_draw_map`'s frame and is gone before exitQgis(): a layer, project or
    layout freed after it crashes the interpreter at exit. A traceback would keep that frame alive,
    so an error is printed and dropped here, not raised past exitQgis().
    """
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        _draw_map(raster, hits, png, note)
        drawn = True
    except Exception:  # noqa: BLE001  (reported in full, then the frames holding QGIS objects are released)
        traceback.print_exc()
        drawn = False
    gc.collect()  # and any reference cycle that still holds a QGIS wrapper
    app.exitQgis()
    return png if drawn else None


def _draw_map(raster: Path, hits: Path, png: Path, note: MapNote) -> None:
    """A print layout: title, the map with labelled boxes, scale bar, legend, note and hit table."""
    from qgis.core import (
        QgsLayoutExporter,
        QgsLayoutItemMap,
        QgsLayoutItemScaleBar,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsPrintLayout,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
        QgsScaleBarSettings,
        QgsUnitTypes,
        QgsVectorLayer,
    )

    project = QgsProject()
    layout = exporter = None
    try:
        base = QgsRasterLayer(str(raster), raster.stem)
        found = QgsVectorLayer(f"{hits}|layername={HITS_LAYER}",
                               f"Hits: the {note.hits} tiles most like the query", "ogr")
        query = QgsVectorLayer(f"{hits}|layername={QUERY_LAYER}", "Query box", "ogr")
        for layer in (base, found, query):
            if not layer.isValid():
                raise RuntimeError(f"cannot open {layer.source()}")
        _style_boxes(query, QUERY_COLOUR, 0.9, "'query'", priority=None)
        _style_boxes(found, HIT_COLOUR, 0.5, "'#' || \"rank\" || ' ' || format_number(\"score\", 2)",
                     priority=f'scale_linear("rank", 1, {max(note.k, 2)}, 10, 0)')
        project.addMapLayer(base, False)  # the imagery stays out of the legend
        project.addMapLayers([query, found])
        project.setCrs(base.crs())

        layout = QgsPrintLayout(project)
        layout.initializeDefaults()
        mm = QgsUnitTypes.LayoutUnit.LayoutMillimeters
        margin, top, side, panel = 8, 21, MAP_MM, PANEL_MM
        layout_map = QgsLayoutItemMap(layout)
        layout_map.attemptMove(QgsLayoutPoint(margin, top, mm))
        layout_map.attemptResize(QgsLayoutSize(side, side, mm))
        layout_map.setLayers([query, found, base])
        layout_map.setCrs(base.crs())
        layout_map.setExtent(QgsRectangle(base.extent()))  # the map's height follows the raster's shape
        layout_map.setFrameEnabled(True)
        layout.addLayoutItem(layout_map)
        map_height = layout_map.rect().height()
        right = margin + side + 7
        layout.pageCollection().page(0).setPageSize(
            QgsLayoutSize(right + panel + margin, max(top + map_height + 14, 200), mm))

        _text(layout, "Places that look like the query box", (margin, 5, side + panel, 9), size=16, bold=True)
        _text(layout, f"{note.raster}: {note.hits} hits (k = {note.k}), model {note.model}",
              (margin, 13, side + panel, 6), size=10)

        bar = QgsLayoutItemScaleBar(layout)
        bar.setStyle("Single Box")
        bar.setLinkedMap(layout_map)
        bar.setUnits(QgsUnitTypes.DistanceUnit.DistanceMeters)
        bar.setUnitLabel("m")
        bar.setNumberOfSegments(4)
        bar.setNumberOfSegmentsLeft(0)
        bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFitWidth)
        bar.setMinimumBarWidth(side / 4)
        bar.setMaximumBarWidth(side / 2.5)
        bar.setTextFormat(_text_format(8))
        bar.attemptMove(QgsLayoutPoint(margin, top + map_height + 1.5, mm))
        layout.addLayoutItem(bar)

        _legend(layout, (right, top))
        _text(layout, "Labels: #rank score. The score is the cosine similarity of a tile's embedding to "
                      "the query's (1 = identical). The query's own area and overlapping duplicates are "
                      "left out before ranking.", (right, top + 36, panel, 22), size=8)
        _hit_table(layout, found, (right, top + 60, panel, map_height - 60))

        exporter = QgsLayoutExporter(layout)
        settings = QgsLayoutExporter.ImageExportSettings()
        settings.dpi = 120
        settings.exportMetadata = False
        # QGIS >= 3.40 then reopens the PNG with GDAL for update to georeference it, which GDAL's PNG
        # driver refuses ("ERROR 6: ... does not support update access"): the picture is written all
        # the same, so that one GDAL complaint is kept off the console.
        from osgeo import gdal

        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            status = exporter.exportToImage(str(png), settings)
        finally:
            gdal.PopErrorHandler()
        if status != QgsLayoutExporter.ExportResult.Success:
            raise RuntimeError(f"{png}: QGIS could not write the PNG ({exporter.errorMessage()})")
    finally:
        # Layout before project (the layout points at it), project before exitQgis (it owns the layers).
        del exporter, layout
        project.clear()


def _style_boxes(layer, colour: str, width_mm: float, label: str, priority: str | None) -> None:
    """Outline-only boxes in `colour`, labelled by the expression `label` in a tag of the same colour.

    Labels go just outside their box (the box's content stays visible), with a leader line when
    pushed further out. QGIS's labelling engine tries positions all around each box and moves a label
    that would collide with another, or drops it if none is free (higher `priority` wins), instead of
    stacking them; the legend's hit table lists every hit either way.
    """
    from qgis.core import (
        QgsFillSymbol,
        QgsLineSymbol,
        QgsPalLayerSettings,
        QgsProperty,
        QgsSimpleLineCallout,
        QgsSingleSymbolRenderer,
        QgsTextBackgroundSettings,
        QgsUnitTypes,
        QgsVectorLayerSimpleLabeling,
    )
    from qgis.PyQt.QtCore import QSizeF
    from qgis.PyQt.QtGui import QColor

    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": colour,
                                         "outline_width": str(width_mm), "joinstyle": "miter"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))

    text = _text_format(7)
    text.setColor(QColor("white"))
    background = QgsTextBackgroundSettings()
    background.setEnabled(True)
    background.setType(QgsTextBackgroundSettings.ShapeType.ShapeRectangle)
    background.setFillColor(QColor(colour))
    background.setStrokeWidth(0)
    background.setSizeType(QgsTextBackgroundSettings.SizeType.SizeBuffer)
    background.setSize(QSizeF(0.6, 0.3))
    background.setSizeUnit(QgsUnitTypes.RenderUnit.RenderMillimeters)
    text.setBackground(background)

    labels = QgsPalLayerSettings()
    labels.fieldName = label
    labels.isExpression = True
    labels.placement = QgsPalLayerSettings.Placement.OutsidePolygons
    labels.dist = 0.5
    callout = QgsSimpleLineCallout()
    callout.setLineSymbol(QgsLineSymbol.createSimple({"line_color": colour, "line_width": "0.3"}))
    callout.setEnabled(True)
    labels.setCallout(callout)
    labels.setFormat(text)
    labels.displayAll = False  # a label that collides is moved or dropped, never drawn over another
    if priority:
        labels.dataDefinedProperties().setProperty(QgsPalLayerSettings.Property.Priority,
                                                   QgsProperty.fromExpression(priority))
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)


def _text(layout, text: str, rect: tuple[float, float, float, float], size: float,
          bold: bool = False) -> None:
    from qgis.core import QgsLayoutItemLabel, QgsLayoutPoint, QgsLayoutSize, QgsTextFormat, QgsUnitTypes
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QFont

    label = QgsLayoutItemLabel(layout)
    label.setText(text)
    font = QFont()
    font.setPointSizeF(size)
    font.setBold(bold)
    if hasattr(label, "setTextFormat"):  # QGIS >= 3.24; setFont is deprecated there
        text_format = QgsTextFormat.fromQFont(font)
        text_format.setSize(size)
        label.setTextFormat(text_format)
    else:
        label.setFont(font)
    label.setMode(QgsLayoutItemLabel.Mode.ModeFont)
    label.setHAlign(Qt.AlignmentFlag.AlignLeft)
    x, y, width, height = rect
    label.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    label.attemptResize(QgsLayoutSize(width, height, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    layout.addLayoutItem(label)


def _text_format(size: float, bold: bool = False):
    from qgis.core import QgsTextFormat
    from qgis.PyQt.QtGui import QFont

    font = QFont()
    font.setBold(bold)
    text = QgsTextFormat()
    text.setFont(font)
    text.setSize(size)
    return text


def _legend(layout, position: tuple[float, float]) -> None:
    from qgis.core import QgsLayoutItemLegend, QgsLayoutPoint, QgsUnitTypes

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setAutoUpdateModel(True)
    legend.setResizeToContents(True)
    x, y = position
    legend.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    layout.addLayoutItem(legend)


def _hit_table(layout, hits_layer, rect: tuple[float, float, float, float]) -> None:
    """rank, score and the centre's longitude/latitude of every hit."""
    from qgis.core import (
        QgsLayoutFrame,
        QgsLayoutItemAttributeTable,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsLayoutTableColumn,
        QgsUnitTypes,
    )

    table = QgsLayoutItemAttributeTable.create(layout)
    table.setVectorLayer(hits_layer)
    centre = f"transform(centroid($geometry), '{hits_layer.crs().authid()}', 'EPSG:4326')"
    columns = []
    for heading, expression in (("rank", '"rank"'), ("score", 'format_number("score", 3)'),
                                ("longitude", f"format_number(x({centre}), 6)"),
                                ("latitude", f"format_number(y({centre}), 6)")):
        column = QgsLayoutTableColumn(heading)
        column.setAttribute(expression)
        columns.append(column)
    table.setColumns(columns)
    table.setHeaderTextFormat(_text_format(8, bold=True))
    table.setContentTextFormat(_text_format(8))
    table.setMaximumNumberOfFeatures(1000)
    layout.addMultiFrame(table)
    frame = QgsLayoutFrame(layout, table)
    x, y, width, height = rect
    frame.attemptMove(QgsLayoutPoint(x, y, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    frame.attemptResize(QgsLayoutSize(width, height, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    table.addFrame(frame)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
