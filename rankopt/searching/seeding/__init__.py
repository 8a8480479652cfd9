"""Seeding: the seed trials (sensitivity, capacity, one-method, uniform, VBMF), enqueued
once across workers under the storage's seed claim. Builds on :mod:`rankopt.searching.space`.
"""
