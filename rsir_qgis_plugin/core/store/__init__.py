"""The index directory: a manifest (the commit point) over one generation of catalog + vectors,
with per-raster shards that make builds resumable and repairs possible.

    INDEX_DIR/manifest.json          replaced atomically; names the live generation's files  (manifest)
    INDEX_DIR/catalog-<gen>.sqlite   rasters and tiles (tile id = FAISS id)                  (catalog)
    INDEX_DIR/vectors-<gen>.faiss    the FAISS index (exact IndexFlatIP, or IndexIVFFlat)    (vectors)
    INDEX_DIR/shards/<key>.npz       one raster's embeddings and tile geometry, checksummed  (shards)
    INDEX_DIR/.lock                  held by the one writer                                   (lock)
"""
from .catalog import RasterEntry, TileEntry, open_catalog
from .generation import verify_generation, write_generation
from .lock import WriterLock
from .manifest import MANIFEST, check_model, read_manifest, recovery_advice, require_manifest
from .reader import IndexInfo, IndexReader, read_index_info, shared_reader
from .repair import RepairSummary, repair_index
from .shards import Shard, ShardError, partial_path, shard_path
from .vectors import APPROXIMATE_THRESHOLD, IVF_NPROBE, choose_kind, faiss_module, make_faiss_index

__all__ = [
    "APPROXIMATE_THRESHOLD", "IVF_NPROBE", "MANIFEST", "IndexInfo", "IndexReader", "RasterEntry", "RepairSummary",
    "Shard", "ShardError", "TileEntry", "WriterLock", "check_model", "choose_kind", "faiss_module",
    "make_faiss_index", "open_catalog", "partial_path", "read_index_info", "read_manifest", "recovery_advice",
    "repair_index", "require_manifest", "shard_path", "shared_reader", "verify_generation", "write_generation",
]
