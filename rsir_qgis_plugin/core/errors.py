"""Errors a user can act on. Each message names the file and the problem."""


class RsirError(Exception):
    """Base of every error rsir reports to a user."""


class ModelError(RsirError):
    """A model file is missing, unreadable or does not follow a contract rsir understands."""


class RasterError(RsirError):
    """A raster cannot be read or used; `path` names it."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RasterMissingError(RasterError):
    """A raster is gone from disk (no file at its path, or a link to nothing): an index may drop it.

    Any other RasterError means the file exists but cannot be used now; an index keeps its tiles.
    """


class IndexStoreError(RsirError):
    """An index directory is unusable (corrupt, wrong format, wrong model)."""


class IndexLockedError(IndexStoreError):
    """Another process is writing the index."""


class ModelMismatchError(IndexStoreError):
    """The index was built with another model than the one given."""


class RuntimeUnavailableError(RsirError):
    """An inference device that was asked for cannot be used (e.g. CUDA did not load)."""


class MissingDependencyError(RsirError):
    """A Python package rsir needs is not installed; `packages` names them."""

    def __init__(self, packages: list[str], detail: str = ""):
        self.packages = list(packages)
        message = "missing Python package(s): " + ", ".join(self.packages)
        super().__init__(message + (f" ({detail})" if detail else ""))


class Cancelled(RsirError):
    """The user cancelled long work."""


class BuildCancelled(Cancelled):
    """The user cancelled an index build; the previous index is untouched."""


class BuildFailed(RsirError):
    """No raster of a build could be indexed; nothing was committed and the previous index is unchanged."""


class SearchCancelled(Cancelled):
    """The user cancelled a search."""
