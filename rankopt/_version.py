"""The version of rankopt (its own module, so that subpackages need not import the root)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
