"""tfstack's TF-Serving-compatible model server for one machine and CI (see docs/modelserver.md)."""

from tfstack import __version__

__all__ = ["__version__"]
