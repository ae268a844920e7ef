"""The package version (one place; read by the package, the CLI and artifact manifests)."""

__version__ = "0.1.0"
