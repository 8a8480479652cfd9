"""Space and allocation: what a trial may choose per layer and how ranks follow from it.

The search space (:class:`SearchSpace`), the sampled proposal and its realised plan, the
allocation of ranks over the sensitivity profile under a budget, and what a space can
reach (the budget check before any trial). The lowest sub-room of :mod:`rankopt.search`.
"""
