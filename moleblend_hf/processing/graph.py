"""Shortest paths of a molecular graph and the bonds along them.

Distances come from RDKit's topological distance matrix (C++). One shortest path per pair is then fixed by a
next-hop table: from atom a towards target j, step to the neighbour n of a with D[n, j] = D[a, j] - 1 that comes
first in a priority order. With RDKit's canonical atom ranks as that order, the chosen paths (hence the features)
do not depend on how the input numbers its atoms.
Walking that table from i visits the atoms of one shortest path i -> j, so the first K hops are gathered for all
pairs at once with K vectorized lookups, O(N^2 (K + max degree)) work instead of per-pair Python loops.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

#: Shortest-path value written for atom pairs in different fragments (the official code's value).
UNREACHABLE = 510
#: Largest real distance written; longer paths are clipped so they never collide with UNREACHABLE.
MAX_DISTANCE = UNREACHABLE - 1


def shortest_path_matrix(mol: Chem.Mol) -> np.ndarray:
    """[N, N] int16 topological distances: 0 on the diagonal, UNREACHABLE between fragments."""
    n = mol.GetNumAtoms()
    if n == 0:
        return np.zeros((0, 0), dtype=np.int16)
    distance = Chem.GetDistanceMatrix(mol, force=True)
    unreachable = distance > n  # RDKit writes a huge value for disconnected pairs
    distance = np.minimum(distance, MAX_DISTANCE)
    distance[unreachable] = UNREACHABLE
    return distance.astype(np.int16)


def next_hop_matrix(distance: np.ndarray, bond_ends: np.ndarray, priority: np.ndarray | None = None) -> np.ndarray:
    """[N, N] int: next atom after a on the chosen shortest path a -> j (a itself if a == j or j is unreachable).

    Among equally short continuations the neighbour with the smallest `priority` [N] wins (default: atom index).
    """
    n = distance.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    both = np.concatenate([bond_ends, bond_ends[:, ::-1]]) if len(bond_ends) else np.zeros((0, 2), np.int64)
    rank = np.arange(n) if priority is None else np.asarray(priority)
    order = np.lexsort((rank[both[:, 1]], both[:, 0]))  # by atom, then by neighbour priority
    both = both[order]
    counts = np.bincount(both[:, 0], minlength=n)
    max_degree = int(counts.max()) if len(both) else 0
    stay = np.broadcast_to(np.arange(n)[:, None], (n, n)).copy()
    if max_degree == 0:
        return stay
    slot = np.arange(len(both)) - np.repeat(np.cumsum(counts) - counts, counts)
    neighbours = np.full((n, max_degree), -1, dtype=np.int64)
    neighbours[both[:, 0], slot] = both[:, 1]

    d = distance.astype(np.int32)
    valid = neighbours >= 0
    safe = np.where(valid, neighbours, 0)
    # closer[a, s, j]: neighbour s of a is one step closer to j than a is.
    closer = (d[safe] == (d[:, None, :] - 1)) & valid[:, :, None] & (d[:, None, :] < UNREACHABLE)
    first = closer.argmax(axis=1)  # lowest slot = highest-priority neighbour
    found = closer.any(axis=1)
    hop = np.take_along_axis(safe, first, axis=1)
    return np.where(found, hop, stay)


def path_bond_features(
    distance: np.ndarray,
    bond_ends: np.ndarray,
    bond_feats: np.ndarray,
    max_hops: int,
    priority: np.ndarray | None = None,
) -> np.ndarray:
    """[N, N, K, F] uint8: bond features (+1) of the first K hops of one shortest path i -> j; 0 = no hop."""
    n = distance.shape[0]
    num_feats = bond_feats.shape[1]
    out = np.zeros((n, n, max_hops, num_feats), dtype=np.uint8)
    if n == 0 or len(bond_ends) == 0:
        return out
    # Bond feature lookup per ordered atom pair; row n*n (all zeros) serves "no bond".
    table = np.zeros((n * n + 1, num_feats), dtype=np.uint8)
    table[bond_ends[:, 0] * n + bond_ends[:, 1]] = bond_feats
    table[bond_ends[:, 1] * n + bond_ends[:, 0]] = bond_feats
    hop = next_hop_matrix(distance, bond_ends, priority)
    target = np.broadcast_to(np.arange(n)[None, :], (n, n))
    current = np.broadcast_to(np.arange(n)[:, None], (n, n))
    for k in range(max_hops):
        following = hop[current, target]
        moved = following != current
        out[:, :, k] = table[np.where(moved, current * n + following, n * n)]
        current = following
    return out


def shortest_path_atoms(
    distance: np.ndarray, bond_ends: np.ndarray, i: int, j: int, priority: np.ndarray | None = None
) -> list[int]:
    """The atoms of the shortest path i -> j that `path_bond_features` uses (for inspection and tests)."""
    if distance[i, j] >= UNREACHABLE:
        return []
    hop = next_hop_matrix(distance, bond_ends, priority)
    path = [i]
    while path[-1] != j:
        path.append(int(hop[path[-1], j]))
    return path


def canonical_priority(mol: Chem.Mol) -> np.ndarray:
    """[N] canonical atom ranks: a tie-break order that follows the molecule, not its atom numbering."""
    return np.asarray(list(Chem.CanonicalRankAtoms(mol, breakTies=True)), dtype=np.int64)


def heavy_degree(num_atoms: int, bond_ends: np.ndarray) -> np.ndarray:
    """[N] int64 graph degree (number of bonded atoms present in the graph)."""
    return np.bincount(bond_ends.reshape(-1), minlength=num_atoms).astype(np.int64)
