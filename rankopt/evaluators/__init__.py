"""Evaluators: complexity (fvcore + analytic), fine-tunes, accuracy, latency."""

from rankopt.evaluators._complexity import Cost, ModelProfile, cost, count_macs, profile

__all__ = ["Cost", "ModelProfile", "cost", "count_macs", "profile"]
