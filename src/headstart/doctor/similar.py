"""Groups of identical and of near-identical files, without comparing every pair.

Near-duplicates are perceptual hashes (bit strings, here 256 bits) within Hamming
distance ``t``. Cut the hash into ``t + 1`` byte-aligned bands: two hashes that differ in
at most ``t`` bits agree exactly on at least one band (pigeonhole), so only hashes sharing
a band value are compared (multi-index hashing). With 256 bits and t = 5 a band is 5 bytes
of scattered bit positions: unrelated images rarely share one, so the cost is ~ n * bands
dictionary lookups plus the (small) buckets' pairs, instead of n^2 comparisons.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


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


def near_groups(hashes: np.ndarray, threshold: int, min_bits: int = 24, chunk: int = 512) -> list[list[int]]:
    """Rows of ``hashes`` (uint8, shape (n, bytes)) within ``threshold`` differing bits.

    Groups are stars, not chains: the first image not yet grouped takes every ungrouped
    image within ``threshold`` of itself. (Joining transitively chained 780 star drawings
    with 17..33 points into one group on OpenClipart.) Hashes with fewer than ``min_bits``
    set (near-flat images: no gradients to compare) are left out, even when equal: plain
    squares of any colours hash alike.
    """
    n = len(hashes)
    if n < 2:
        return []
    unique, inverse = np.unique(hashes, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    members: dict[int, list[int]] = defaultdict(list)  # unique row -> input rows
    for i, k in enumerate(inverse):
        members[int(k)].append(i)
    ones = _popcount(unique).sum(-1, dtype=np.int32)  # (u,) bits set: how much structure
    plain = ones < min_bits
    # Shuffle the bit positions (fixed seed, same for every hash) before banding: a band of
    # neighbouring positions is all-zero for most images with flat regions (clip art,
    # backgrounds), and its bucket then holds most of the data set; 40 scattered
    # positions are rarely all zero. Hamming distances are unchanged.
    rng = np.random.default_rng(0)
    scattered = np.packbits(np.unpackbits(unique, axis=1)[:, rng.permutation(unique.shape[1] * 8)], axis=1)
    neighbours: dict[int, set[int]] = defaultdict(set)
    if 0 < threshold and len(unique) > 1:
        if threshold >= 8 * hashes.shape[1] // 2:
            raise ValueError(f"threshold {threshold} is too large for {8 * hashes.shape[1]}-bit hashes")
        for lo, hi in band_edges(hashes.shape[1], threshold):
            buckets: dict[bytes, list[int]] = defaultdict(list)
            band = np.ascontiguousarray(scattered[:, lo:hi])
            for row, key in enumerate(band):
                if not plain[row]:
                    buckets[key.tobytes()].append(row)
            for bucket in buckets.values():
                if len(bucket) > 1:
                    _link(unique, ones, np.array(bucket), threshold, chunk, neighbours)
    groups: list[list[int]] = []
    taken: set[int] = set()
    for u in range(len(unique)):
        if u in taken or plain[u]:
            continue
        star = [u] + sorted(v for v in neighbours.get(u, ()) if v not in taken)
        taken.update(star)
        rows = sorted(i for v in star for i in members[v])
        if len(rows) > 1:
            groups.append(rows)
    return groups


def _link(unique: np.ndarray, ones: np.ndarray, bucket: np.ndarray, threshold: int, chunk: int, neighbours: dict[int, set[int]]) -> None:
    values, bits = unique[bucket], ones[bucket]
    for start in range(0, len(bucket), chunk):  # (chunk, len(bucket)) distances at a time
        dist = _popcount(values[start : start + chunk, None, :] ^ values[None, :, :]).sum(-1, dtype=np.int32)
        # Also at most 1/8 of the sparser hash's set bits: 5 bits apart is a re-encode for
        # a detailed picture (55 bits set) but another picture for a sparse one (18 set;
        # measured on generated 48 px discs).
        limit = np.minimum(threshold, np.minimum(bits[start : start + chunk, None], bits[None, :]) // 8)
        rows, cols = np.nonzero(dist <= limit)
        rows += start
        keep = rows != cols
        for r, c in zip(bucket[rows[keep]], bucket[cols[keep]]):
            neighbours[int(r)].add(int(c))
