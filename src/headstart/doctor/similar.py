"""Groups of identical and of near-identical files, without comparing every pair.

Near-duplicates are perceptual hashes (bit strings, here 256 bits) within Hamming
distance ``t``. Cut the hash into ``t + 1`` byte-aligned bands: two hashes that differ in
at most ``t`` bits agree exactly on at least one band (pigeonhole), so only hashes sharing
a band value are compared (multi-index hashing). With 256 bits and t = 5 a band is 5 bytes:
unrelated images almost never share one, so the cost is ~ n * bands dictionary lookups
instead of n^2 comparisons.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return [g for g in out.values() if len(g) > 1]


def exact_groups(keys: list[str]) -> list[list[int]]:
    """Indices sharing a key (content hash), groups of two or more."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        by_key[k].append(i)
    return [g for g in by_key.values() if len(g) > 1]


def band_edges(nbytes: int, threshold: int) -> list[tuple[int, int]]:
    """``threshold + 1`` byte ranges covering ``nbytes`` (at most one band per byte)."""
    n = min(threshold + 1, nbytes)
    widths = [nbytes // n + (1 if i < nbytes % n else 0) for i in range(n)]
    starts = np.cumsum([0, *widths[:-1]])
    return [(int(s), int(s) + w) for s, w in zip(starts, widths)]


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x[..., None], axis=-1).sum(-1)


def near_groups(hashes: np.ndarray, threshold: int, chunk: int = 512) -> list[list[int]]:
    """Rows of ``hashes`` (uint8, shape (n, bytes)) within ``threshold`` differing bits,
    joined transitively into groups of two or more. Threshold 0: equal hashes only."""
    n = len(hashes)
    if n < 2:
        return []
    union = _Union(n)
    unique, first, inverse = np.unique(hashes, axis=0, return_index=True, return_inverse=True)
    for i, u in enumerate(np.asarray(inverse).ravel()):  # equal hashes: one group
        union.join(int(first[u]), i)
    if threshold <= 0 or len(unique) < 2:
        return union.groups()
    if threshold >= 8 * hashes.shape[1] // 2:
        raise ValueError(f"threshold {threshold} is too large for {8 * hashes.shape[1]}-bit hashes")
    for lo, hi in band_edges(hashes.shape[1], threshold):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        band = np.ascontiguousarray(unique[:, lo:hi])
        for row, key in enumerate(band):
            buckets[key.tobytes()].append(row)
        for bucket in buckets.values():
            if len(bucket) < 2:
                continue
            members = np.array(bucket)
            values = unique[members]
            for start in range(0, len(members), chunk):  # (chunk, len(bucket)) distances at a time
                dist = _popcount(values[start : start + chunk, None, :] ^ values[None, :, :]).sum(-1, dtype=np.int32)
                rows, cols = np.nonzero(dist <= threshold)
                rows += start
                keep = rows < cols  # each pair once, never an entry with itself
                for r, c in zip(members[rows[keep]], members[cols[keep]]):
                    union.join(int(first[r]), int(first[c]))
    return union.groups()
