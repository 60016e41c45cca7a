"""The index directory: a manifest (the commit point) over immutable segments of catalog + vectors,
with per-raster shards that make builds resumable and repairs possible.

    INDEX_DIR/manifest.json                 replaced atomically; lists the live segments      (manifest)
    INDEX_DIR/segments/s<n>/catalog.sqlite  rasters and tiles of one segment                    (catalog)
    INDEX_DIR/segments/s<n>/vectors.faiss   FAISS: exact, IVF, or IVF-PQ + vectors.f16          (vectors)
    INDEX_DIR/segments/s<n>/search.faiss    with DBA: augmented search vectors (+ search.f16)   (dba)
    INDEX_DIR/shards/<key>.npz              one raster's embeddings and tile geometry           (shards)
    INDEX_DIR/.lock                         held by the one writer                              (lock)

A build adds a segment and tombstones replaced rasters (generation.commit_changes); compaction
and repair rewrite the index as one segment (generation.write_generation).
"""
from .catalog import RasterEntry, TileEntry, open_catalog
from .dba import DbaRun, dba_setting
from .generation import LiveRaster, commit_changes, live_rasters, verify_generation, write_generation
from .lock import WriterLock
from .manifest import MANIFEST, check_model, read_manifest, recovery_advice, require_manifest
from .reader import IndexInfo, IndexReader, read_index_info, shared_reader
from .repair import RepairSummary, repair_index
from .shards import Shard, ShardError, partial_path, shard_path
from .vectors import APPROXIMATE_THRESHOLD, COMPRESS_THRESHOLD, IVF_NPROBE, choose_kind, faiss_module, make_faiss_index

__all__ = [
    "APPROXIMATE_THRESHOLD", "COMPRESS_THRESHOLD", "IVF_NPROBE", "MANIFEST", "DbaRun", "IndexInfo", "IndexReader",
    "LiveRaster", "RasterEntry", "RepairSummary", "Shard", "ShardError", "TileEntry", "WriterLock", "check_model",
    "choose_kind", "commit_changes", "dba_setting", "faiss_module", "live_rasters", "make_faiss_index", "open_catalog",
    "partial_path", "read_index_info", "read_manifest", "recovery_advice", "repair_index", "require_manifest",
    "shard_path", "shared_reader", "verify_generation", "write_generation",
]
