"""rankopt: search per-layer low-rank decompositions of a trained CNN under a budget."""

__version__ = "0.1.0"

__all__ = ["__version__"]
