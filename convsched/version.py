"""The convsched version: in tuning records and export manifests (kept equal to pyproject.toml's)."""
__version__ = "0.1.0"
