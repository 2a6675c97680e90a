"""bevcc's version, in a module of its own so core modules read it without importing the package."""

__version__ = "0.1.0"
