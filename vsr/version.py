"""The package version (also in the provenance tags of every output)."""

__version__ = "0.1.0"
