"""Laser ISL topology ``+grid``: two intra-plane and two inter-plane neighbours.

Walker shells know each satellite's (plane, slot). In a Walker delta with a full
360 deg of RAAN the last plane links to the first with the slot shifted by the phasing
F (satellite (P-1, s) meets (0, s + F)); Walker star shells have a seam where planes
counter-rotate, and no links cross it. Imported element sets get planes inferred from
their orbit normals at the plan start and slots from the argument of latitude.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import numpy.typing as npt

from starcompute.orbits.constellation import Constellation
from starcompute.times import FloatArray

IntArray = npt.NDArray[np.int64]
TOPOLOGIES = ("+grid",)
_SAME_PLANE_DEG = 3.0


def _ring(members: IntArray) -> list[tuple[int, int]]:
    n = len(members)
    if n < 2:
        return []
    if n == 2:
        return [(int(members[0]), int(members[1]))]
    return [(int(members[i]), int(members[(i + 1) % n])) for i in range(n)]


def _walker_links(const: Constellation, shell: str, cross: bool) -> list[tuple[int, int]]:
    spec = const.walker[shell]
    idx = np.flatnonzero(np.array(const.shells) == shell)
    grid = np.full((spec.planes, spec.sats_per_plane), -1, dtype=np.int64)
    grid[const.plane[idx], const.slot[idx]] = idx
    links = [pair for p in range(spec.planes) for pair in _ring(grid[p])]
    if not cross:
        return links
    for p in range(spec.planes - 1):
        links += [(int(grid[p, s]), int(grid[p + 1, s])) for s in range(spec.sats_per_plane)]
    if spec.closed_ring:
        last = spec.planes - 1
        links += [
            (int(grid[last, s]), int(grid[0, (s + spec.phasing) % spec.sats_per_plane]))
            for s in range(spec.sats_per_plane)
        ]
    return links


def infer_planes(r_km: FloatArray, v_km_s: FloatArray) -> tuple[IntArray, FloatArray]:
    """(plane id ordered by RAAN, argument of latitude deg) from states at one instant."""
    h = np.cross(r_km, v_km_s)
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    raan = np.degrees(np.arctan2(h[:, 0], -h[:, 1])) % 360.0
    node = np.stack([np.cos(np.radians(raan)), np.sin(np.radians(raan)), np.zeros(len(raan))], 1)
    rn = r_km / np.linalg.norm(r_km, axis=1, keepdims=True)
    u = np.degrees(np.arctan2(np.sum(np.cross(node, rn) * h, axis=1), np.sum(node * rn, axis=1)))
    plane = np.full(len(h), -1, dtype=np.int64)
    reps: list[int] = []
    cos_tol = np.cos(np.radians(_SAME_PLANE_DEG))
    for i in np.argsort(raan):
        for k, j in enumerate(reps):
            if h[i] @ h[j] >= cos_tol:
                plane[i] = k
                break
        else:
            plane[i] = len(reps)
            reps.append(int(i))
    return plane, u % 360.0


def _imported_links(
    members: IntArray, r_km: FloatArray, v_km_s: FloatArray, cross: bool
) -> list[tuple[int, int]]:
    plane, u = infer_planes(r_km[members], v_km_s[members])
    planes = [members[plane == k][np.argsort(u[plane == k])] for k in range(plane.max() + 1)]
    u_of = dict(zip(members.tolist(), u.tolist(), strict=True))
    links = [pair for ring in planes for pair in _ring(ring)]
    if not cross:
        return links
    for here, there in pairwise(planes):
        u_there = np.array([u_of[int(j)] for j in there])
        for i in here:
            gap = np.abs((u_there - u_of[int(i)] + 180.0) % 360.0 - 180.0)
            links.append((int(i), int(there[np.argmin(gap)])))
    return links


def plus_grid(
    const: Constellation, r0_km: FloatArray, v0_km_s: FloatArray, terminals: int = 4
) -> IntArray:
    """Undirected links (a < b) as an (L, 2) array; states at the plan start for imports.

    ``terminals``: laser terminals per satellite. Four give the whole +grid; two or three
    only the in-plane ring (the two neighbours in the plane); fewer, no links."""
    links: list[tuple[int, int]] = []
    if terminals < 2:
        return np.zeros((0, 2), dtype=np.int64)
    cross = terminals >= 4
    for shell in dict.fromkeys(const.shells):
        if shell in const.walker:
            links += _walker_links(const, shell, cross)
        else:
            members = np.flatnonzero(np.array(const.shells) == shell)
            ok = members[np.all(np.isfinite(r0_km[members]), axis=1)]
            links += _imported_links(ok, r0_km, v0_km_s, cross) if len(ok) else []
    if not links:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.array(links, dtype=np.int64), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)
