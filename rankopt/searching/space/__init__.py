"""Space and allocation: what a trial may choose per layer and how ranks follow from it.

The search space (:class:`SearchSpace`), the sampled proposal and its realised plan, the
allocation of ranks over the sensitivity profile under a budget, and what a space can
reach (the budget check before any trial). The lowest sub-room of :mod:`rankopt.searching`.

Light: the constant below is read by the command line's ``--help`` (no torch).
"""

__all__ = ["DEFAULT_MIN_LAYER_SHARE"]

DEFAULT_MIN_LAYER_SHARE = 0.005
"""Layers below this share of the dense model's MACs and of its parameters stay dense."""
