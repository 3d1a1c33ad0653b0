"""The package version, kept in one place (read by pyproject and sent as ``Client-Version``)."""

__version__ = "0.1.0"
