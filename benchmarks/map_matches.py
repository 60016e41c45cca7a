"""Mapping every match (core/match_map.py) at 10^5 and 10^6 tiles: time and memory.

    .venv/bin/python benchmarks/map_matches.py [--tiles 100000 1000000] [--workdir DIR]

Each index is written through rsir's store like benchmarks/scale.py's (synthetic_index: real embeddings of
the sample raster blended into virtual rasters of 100 x 100 tiles, plus the sample raster's own tiles).
The labels are two positive and two negative tiles of the sample raster (stored vectors: the classifier's
case, nothing embedded). In a fresh process: score_tiles (the feedback search, then every tile scored
segment by segment), then at three thresholds dissolve (outlines), summarise (the dock's preview) and
write_map (GeoPackage); memory as the process's peak resident size (VmHWM) before scoring, after
scoring and at the end (it counts the index's memory-mapped pages too, as they are read), and its
private memory (RssAnon) after scoring and at the end.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_index import SAMPLE_RASTER, real_embeddings, write_synthetic_index

THRESHOLDS = (0.5, 0.9)  # and the score of the top 1 % of tiles, measured per index


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=None, help="where the indexes go (default: a temp dir)")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: measure in a fresh process
    parser.add_argument("--labels", type=Path, help=argparse.SUPPRESS)
    return parser


def probe(index_dir: Path, labels: Path, workdir: Path) -> dict:
    """In a fresh process: score every tile, then dissolve, preview and write at each threshold."""
    from rsir_qgis_plugin.core.labels_io import read_labels
    from rsir_qgis_plugin.core.map_io import write_map
    from rsir_qgis_plugin.core.match_map import MapParams, dissolve, score_tiles, summarise

    feedback = read_labels(labels)
    rss_start = memory_mb()
    started = time.perf_counter()
    scores = score_tiles(index_dir, feedback, MapParams(), str(labels))
    score_s = time.perf_counter() - started
    rss_scored, private_scored = memory_mb(), memory_mb("RssAnon")
    thresholds = [*THRESHOLDS, round(float(np.quantile(scores.scores, 0.99)), 4)]
    rows = []
    for threshold in thresholds:
        started = time.perf_counter()
        result = dissolve(scores, threshold)
        dissolve_s = time.perf_counter() - started
        started = time.perf_counter()
        summarise(scores, threshold)
        preview_s = time.perf_counter() - started
        started = time.perf_counter()
        write_map(result, workdir / "map.gpkg")
        write_s = time.perf_counter() - started
        rows.append({"threshold": threshold, "tiles": result.tiles, "polygons": len(result.polygons),
                     "dissolve_s": dissolve_s, "preview_s": preview_s, "write_s": write_s,
                     "file_mb": (workdir / "map.gpkg").stat().st_size / 1e6})
    return {"tiles": len(scores.scores), "scoring": scores.scoring, "score_s": score_s, "rss_start_mb": rss_start,
            "rss_scored_mb": rss_scored, "private_scored_mb": private_scored, "rss_end_mb": memory_mb(),
            "private_end_mb": memory_mb("RssAnon"), "rows": rows}


def memory_mb(field: str = "VmHWM") -> float:
    """VmHWM: the process's peak resident size so far (ru_maxrss would carry the parent's over exec);
    RssAnon: its private memory now (without the index's pages mapped from the page cache)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields[field].split()[0]) / 1024


def sample_labels(sample_index: Path, workdir: Path) -> tuple[Path, dict]:
    """Two positive and two negative tiles of the sample raster (as boxes on their tiles) in a labels file;
    and the raster's real shard, added to every index so the labels are indexed tiles."""
    from rsir_qgis_plugin.core.examples import Feedback, LabelledBox
    from rsir_qgis_plugin.core.labels_io import write_labels
    from rsir_qgis_plugin.core.store import IndexReader, Shard

    with IndexReader(sample_index) as reader:
        key = next(iter(reader.rasters.values())).shard
    shard = Shard.load(sample_index / "shards" / f"{key}.npz")
    similarity = shard.vectors @ shard.vectors[0]
    # Tiles 128 px at a 32 px stride: the positives are tile 0 and its most similar tile that does not
    # overlap it; the negatives the two least similar.
    apart = (np.abs(shard.windows[:, 0] - shard.windows[0, 0]) >= 128) | (
        np.abs(shard.windows[:, 1] - shard.windows[0, 1]) >= 128)
    second = int(np.flatnonzero(apart)[np.argmax(similarity[apart])])
    negatives = np.argsort(similarity)[:2]
    boxes = [LabelledBox(str(SAMPLE_RASTER), tuple(map(float, shard.bounds[i])), None, True) for i in (0, second)]
    boxes += [LabelledBox(str(SAMPLE_RASTER), tuple(map(float, shard.bounds[i])), None, False) for i in negatives]
    return write_labels(Feedback(tuple(boxes)), workdir / "labels.gpkg"), {key: shard}


def main(args) -> int:
    if args.probe:
        print(json.dumps(probe(args.probe, args.labels, args.workdir)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rsir-map-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base = real_embeddings(workdir)
    labels, real = sample_labels(workdir / "sample-index", workdir)
    for tiles in args.tiles:
        index = workdir / f"map-{tiles}"
        shutil.rmtree(index, ignore_errors=True)
        started = time.perf_counter()
        manifest = write_synthetic_index(index, tiles - len(next(iter(real.values())).vectors), base, seed=7,
                                         extra=real)
        written = time.perf_counter() - started
        done = subprocess.run([sys.executable, __file__, "--probe", str(index), "--labels", str(labels),
                               "--workdir", str(workdir)], capture_output=True, text=True, check=True)
        measured = json.loads(done.stdout)
        print(f"\n== {manifest['tile_count']:,} tiles ({manifest['index_kind']}, written in {written:.0f} s), "
              f"{measured['scoring']} ==")
        print(f"score every tile (feedback search + all vectors, segment by segment): {measured['score_s']:.1f} s "
              f"({measured['tiles'] / measured['score_s']:,.0f} tiles/s)")
        print(f"peak resident memory: {measured['rss_start_mb']:.0f} MB before scoring (imports, labels), "
              f"{measured['rss_scored_mb']:.0f} MB after scoring, {measured['rss_end_mb']:.0f} MB after the "
              f"dissolves and writes (with the index's mapped pages); private memory "
              f"{measured['private_scored_mb']:.0f} MB after scoring, {measured['private_end_mb']:.0f} MB at the end")
        for row in measured["rows"]:
            print(f"threshold {row['threshold']:g}: {row['tiles']:,} tiles -> {row['polygons']:,} polygons; "
                  f"dissolve {row['dissolve_s']:.2f} s, preview {row['preview_s']:.2f} s, "
                  f"write {row['write_s']:.2f} s ({row['file_mb']:.1f} MB .gpkg)")
        shutil.rmtree(index, ignore_errors=True)  # 10^6 tiles take ~1 GB
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
