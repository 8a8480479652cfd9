"""Objective: one trial from proposal to metrics, and the sensitivity profile's measurement.

Realise, apply, calibrate, proxy fine-tune, metrics (:class:`Objective`); duplicate plans
take an earlier trial's results; memory is handed back between phases. Builds on
:mod:`rankopt.searching.space`.
"""
