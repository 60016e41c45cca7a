"""Qt-free retrieval engine: tiling, embedding, the persistent index and box search.

Nothing in this package imports Qt or QGIS, so the command line, the tests and the QGIS
plugin all drive the same code.
"""
