"""The package version: a module of its own, so any layer can name it (PNG provenance, the
server, run files) without importing the public API in ``openimagen/__init__.py``."""

__version__ = "0.1.0"
