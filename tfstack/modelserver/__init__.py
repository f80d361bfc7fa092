"""tfstack's TF-Serving-compatible model server for one machine and CI (see docs/modelserver.md)."""

__version__ = "0.1.0"
