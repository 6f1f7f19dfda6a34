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
    stay = np.repeat(np.arange(n)[:, None], n, axis=1)
    if n == 0 or len(bond_ends) == 0:
        return stay
    source = np.concatenate([bond_ends[:, 0], bond_ends[:, 1]])
    target = np.concatenate([bond_ends[:, 1], bond_ends[:, 0]])
    rank = np.arange(n) if priority is None else np.asarray(priority)
    order = np.lexsort((rank[target], source))  # by atom, then by neighbour priority
    source, target = source[order], target[order]
    counts = np.bincount(source, minlength=n)
    slot = np.arange(len(source)) - np.repeat(np.cumsum(counts) - counts, counts)
    neighbours = np.full((n, int(counts.max())), n, dtype=np.int64)  # n = "no neighbour" sentinel
    neighbours[source, slot] = target
    # Sentinel row n has a distance no atom can be one step closer than.
    d = np.vstack([distance.astype(np.int32), np.full((1, n), -2, dtype=np.int32)])
    closer = d[neighbours] == (d[:n, None, :] - 1)  # [a, slot, j]: that neighbour is one step closer to j
    closer &= d[:n, None, :] < UNREACHABLE
    hop = np.take_along_axis(neighbours, closer.argmax(axis=1), axis=1)  # first slot = highest priority
    return np.where(closer.any(axis=1), hop, stay)


def path_bond_features(
    distance: np.ndarray,
    bond_ends: np.ndarray,
    bond_feats: np.ndarray,
    max_hops: int,
    priority: np.ndarray | None = None,
) -> np.ndarray:
    """[N, N, K, F] uint8: bond features (+1) of the first K hops of one shortest path i -> j; 0 = no hop."""
    n = distance.shape[0]
    num_bonds, num_feats = bond_feats.shape
    if n == 0 or num_bonds == 0:
        return np.zeros((n, n, max_hops, num_feats), dtype=np.uint8)
    # Bond id of every ordered atom pair; id num_bonds (an all-zero feature row) means "no bond", incl. a -> a.
    bond_id = np.full(n * n, num_bonds, dtype=np.int64)
    ids = np.arange(num_bonds)
    bond_id[bond_ends[:, 0] * n + bond_ends[:, 1]] = ids
    bond_id[bond_ends[:, 1] * n + bond_ends[:, 0]] = ids
    hop = next_hop_matrix(distance, bond_ends, priority).ravel()
    # Walk all N^2 pairs at once. Pair p = a * n + j (at atom a, heading to j) steps to pair hop[p] * n + j and
    # crosses bond bond_id[a * n + hop[p]] on the way.
    pair = np.arange(n * n)
    target = pair % n
    step_to = hop * n + target
    crossed = bond_id[(pair - target) + hop]
    hop_bonds = np.empty((max_hops, n * n), dtype=np.int64)
    for k in range(max_hops):
        hop_bonds[k] = crossed[pair]
        pair = step_to[pair]
    table = np.vstack([bond_feats, np.zeros((1, num_feats), dtype=np.uint8)])
    return table[hop_bonds.T].reshape(n, n, max_hops, num_feats)


def floyd_warshall_intermediates(num_atoms: int, bond_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official code's Floyd-Warshall (Graphormer `algos.floyd_warshall`), vectorized over (i, j).

    Returns distances [N, N] (UNREACHABLE between fragments) and the intermediate-node table [N, N]: for every
    pair, the k of the outer loop that last strictly shortened it (-1 for bonded pairs and the diagonal,
    UNREACHABLE for unreachable pairs). The outer loop over k stays; the inner i, j loops become one array update,
    which is exact because row k and column k cannot change during iteration k (M[k, k] = 0).
    """
    n = num_atoms
    distance = np.full((n, n), UNREACHABLE, dtype=np.int64)
    if len(bond_ends):
        distance[bond_ends[:, 0], bond_ends[:, 1]] = 1
        distance[bond_ends[:, 1], bond_ends[:, 0]] = 1
    np.fill_diagonal(distance, 0)
    via = np.full((n, n), -1, dtype=np.int64)
    for k in range(n):
        cost = distance[:, k, None] + distance[None, k, :]
        via[cost < distance] = k
        np.minimum(distance, cost, out=distance)
    unreachable = distance >= UNREACHABLE
    distance[unreachable] = UNREACHABLE
    via[unreachable] = UNREACHABLE
    return distance, via


def official_path_atoms(distance: np.ndarray, via: np.ndarray, max_hops: int) -> np.ndarray:
    """[N, N, K + 1] the first K + 1 atoms of the official code's path i -> j (-1 past its end or when unreachable).

    The official path is `[i] + get_all_edges(i, j) + [j]` with get_all_edges(i, j) = get_all_edges(i, k) + [k] +
    get_all_edges(k, j), k = via[i, j], i.e. path(i, j) = path(i, k) + path(k, j)[1:]. Both halves are shorter, so
    pairs are filled level by level of distance, each level with array gathers, no per-pair recursion.
    """
    n = distance.shape[0]
    steps = np.arange(max_hops + 1)
    atoms = np.full((n, n, max_hops + 1), -1, dtype=np.int64)
    atoms[:, :, 0] = np.where(distance < UNREACHABLE, np.arange(n)[:, None], -1)
    rows, cols = np.nonzero(distance == 1)
    atoms[rows, cols, 1] = cols
    reachable = distance[distance < UNREACHABLE]
    for level in range(2, int(reachable.max(initial=0)) + 1):
        rows, cols = np.nonzero(distance == level)
        middle = via[rows, cols]
        left = distance[rows, middle][:, None]  # hops from i to k
        from_left = atoms[rows[:, None], middle[:, None], np.minimum(steps, max_hops)[None, :]]
        from_right = atoms[middle[:, None], cols[:, None], np.clip(steps[None, :] - left, 0, max_hops)]
        atoms[rows, cols] = np.where(steps[None, :] <= left, from_left, from_right)
    return atoms


def official_path_bond_features(
    num_atoms: int, bond_ends: np.ndarray, bond_feats: np.ndarray, max_hops: int
) -> np.ndarray:
    """[N, N, K, F] uint8: like `path_bond_features`, but along the path the official code picks among equally
    short ones (its Floyd-Warshall bookkeeping, which depends on the atom order)."""
    n = num_atoms
    num_bonds, num_feats = bond_feats.shape
    if n == 0 or num_bonds == 0:
        return np.zeros((n, n, max_hops, num_feats), dtype=np.uint8)
    distance, via = floyd_warshall_intermediates(n, bond_ends)
    atoms = official_path_atoms(distance, via, max_hops)
    bond_id = np.full((n + 1) * (n + 1), num_bonds, dtype=np.int64)  # index n stands for "no atom"
    ids = np.arange(num_bonds)
    bond_id[bond_ends[:, 0] * (n + 1) + bond_ends[:, 1]] = ids
    bond_id[bond_ends[:, 1] * (n + 1) + bond_ends[:, 0]] = ids
    atoms = np.where(atoms < 0, n, atoms)
    hops = bond_id[atoms[..., :-1] * (n + 1) + atoms[..., 1:]]  # [N, N, K]
    table = np.vstack([bond_feats, np.zeros((1, num_feats), dtype=np.uint8)])
    return table[hops]


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
