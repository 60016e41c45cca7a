"""rsir: remote-sensing image retrieval for QGIS.

QGIS imports this module to load the plugin, so it must import nothing heavy: onnxruntime,
faiss and rasterio are imported only when an index is built or searched, and a missing one
becomes a message with an install button instead of a traceback at start-up.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """QGIS entry point: returns the plugin object for the running QGIS interface."""
    from .dependencies import add_private_site
    from .plugin import RsirPlugin

    # Packages the plugin installed earlier live in a private folder: make them importable.
    add_private_site()
    return RsirPlugin(iface)
