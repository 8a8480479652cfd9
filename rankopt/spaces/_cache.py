"""A process-wide, byte-bounded LRU cache of decompositions (factors and rank-free bases)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import torch

__all__ = [
    "DEFAULT_CACHE_LIMIT_BYTES",
    "DecompositionCache",
    "cache_info",
    "clear_cache",
    "get_cache",
    "set_cache_limit",
    "weight_digest",
]

DEFAULT_CACHE_LIMIT_BYTES = 256 * 2**20
"""Default bound of the cache: 256 MiB of tensor storage."""


def weight_digest(weight: torch.Tensor) -> str:
    """Content digest of a tensor: dtype, shape and the bytes of its values (BLAKE2b-128).

    Args:
        weight: Any tensor (any device and dtype; it is copied to the CPU if needed).

    Returns:
        A hex string; equal tensors give equal digests.
    """
    data = weight.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype}|{tuple(weight.shape)}|".encode())
    if data.numel():
        h.update(data.view(torch.uint8).numpy().data)
    return h.hexdigest()


def nbytes(value: Any) -> int:
    """Bytes of tensor storage held by ``value`` (tensors inside tuples/lists/dicts summed).

    A view is charged for its whole storage, so the bound is never underestimated.
    """
    if isinstance(value, torch.Tensor):
        return int(value.untyped_storage().nbytes())
    if isinstance(value, tuple | list):
        return sum(nbytes(v) for v in value)
    if isinstance(value, Mapping):
        return sum(nbytes(v) for v in value.values())
    return 0


class DecompositionCache:
    """Thread-safe LRU mapping bounded by the total bytes of the tensors it holds.

    An entry larger than the whole limit is not stored. Entries are evicted least recently
    used first until the total fits.

    Args:
        limit_bytes: Most bytes of tensor storage held at once (>= 0).
    """

    def __init__(self, limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES) -> None:
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = int(limit_bytes)
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def limit_bytes(self) -> int:
        """Current bound in bytes."""
        return self._limit

    @property
    def stored_bytes(self) -> int:
        """Bytes of tensor storage held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any | None:
        """The value stored under ``key`` (marked most recently used), or None."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``, evicting old entries to stay within the limit."""
        size = nbytes(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self._limit:
                return
            self._data[key] = (value, size)
            self._bytes += size
            self._evict()

    def set_limit(self, limit_bytes: int) -> None:
        """Change the bound (evicting at once if needed).

        Raises:
            ValueError: ``limit_bytes`` is negative.
        """
        if limit_bytes < 0:
            raise ValueError(f"cache limit must be >= 0 bytes, got {limit_bytes}")
        with self._lock:
            self._limit = int(limit_bytes)
            self._evict()

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = 0
            self.misses = 0

    def _evict(self) -> None:
        while self._bytes > self._limit and self._data:
            _, (_, size) = self._data.popitem(last=False)
            self._bytes -= size


_CACHE = DecompositionCache()


def get_cache() -> DecompositionCache:
    """The process-wide cache used by :func:`rankopt.spaces.decompose`."""
    return _CACHE


def set_cache_limit(n_bytes: int) -> None:
    """Bound the decomposition cache to ``n_bytes`` bytes of tensors (default 256 MiB).

    Raises:
        ValueError: ``n_bytes`` is negative.
    """
    _CACHE.set_limit(n_bytes)


def clear_cache() -> None:
    """Empty the decomposition cache."""
    _CACHE.clear()


def cache_info() -> dict[str, int]:
    """``{"entries", "stored_bytes", "limit_bytes", "hits", "misses"}`` of the cache."""
    return {
        "entries": len(_CACHE),
        "stored_bytes": _CACHE.stored_bytes,
        "limit_bytes": _CACHE.limit_bytes,
        "hits": _CACHE.hits,
        "misses": _CACHE.misses,
    }
