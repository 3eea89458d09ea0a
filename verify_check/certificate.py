"""Reading a certificate file and checking its tree's shape (not yet its bounds).

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays). ``header`` holds UTF-8 JSON:
``format`` ("verifier-certificate"), ``version`` (1), ``model_sha256``, ``spec_sha256``,
``float_model`` ("float32"), ``tool`` and ``regions``: one entry per input region of the
property in the file's order, ``{"certified": bool, "reason": str}``. For each certified
region ``i``, arrays named ``r{i}_...`` describe a tree of boxes, nodes numbered from 0 (the
root: the region's box widened to float32 corners) with every parent before its children:

- ``parent`` (int64 ``(N,)``, -1 for the root), ``kind`` (int8: 0 root, 1 lower half, 2 upper
  half, 3 re-bound: the parent's final box again, 4 and 5: the parent's box where a ReLU's
  input is ``<= 0`` (4) or ``>= 0`` (5)), ``dim`` (int64: the split input of a half, the ReLU
  layer's position among the ReLU layers for kinds 4 and 5, else -1), ``point`` (float64: where
  the parent's final box is cut; a lower half keeps ``x[dim] <= point``, an upper half
  ``x[dim] >= point``) and, when a tree has ReLU splits, ``neuron`` (int64: the split neuron
  in its layer, else -1);
- ``clip_node`` (int64 ``(C,)``), ``clip_lower``/``clip_upper`` (float64 ``(C, n)``): nodes
  whose final box is this sub-box of their box (the rest refuted by the node's own linear
  bounds, see :mod:`verify_check.tree`);
- ``alpha_node`` (int64 ``(A,)``) and ``alpha_{j}`` (float32 ``(A, R, n_j)``): lower slopes
  in ``[0, 1]`` of the ``j``-th ReLU layer's neurons for each of the region's ``R`` spec rows
  (clauses in order, rows in order), used at those nodes besides the default slopes;
- ``beta_node`` (int64 ``(M,)``) and ``beta_{j}`` (float32 ``(M, R, n_j)``, ``>= 0``): split
  multipliers of the ``j``-th ReLU layer's neurons per row, used with the node's alpha slopes
  (the checker multiplies each by the sign of its neuron's split on the path, 0 if unsplit);
- ``lower_node`` (int64 ``(L,)``) and ``lower_{j}`` (uint8 ``(L, ceil(n_j / 8))``, NumPy's
  ``packbits`` of one bit per neuron): a lower slope 0 or 1 per neuron of the ``j``-th ReLU
  layer for all rows of those nodes, also used besides the default slopes (CROWN's choice
  of slope depends on the intermediate bounds, which the checker computes its own way).

- optional *claims* (bounds at the root that the checker verifies first, then uses on every
  node): ``claim_lower_{j}``/``claim_upper_{j}`` (float64 ``(n_j,)``), bounds of the ``j``-th
  ReLU layer's input over the region's box, for every ReLU layer; ``claim_rows_{j}`` (int64
  ``(P,)``) positions with proving slopes and ``claim_slopes_{j}_{k}`` (float32 ``(2, P,
  n_k)``, in ``[0, 1]``): the lower slopes of the ``k``-th ReLU layer (``k < j``) for the rows
  ``+e_p`` (first) and ``-e_p`` (second) of those positions (a layer without: default slopes);
  ``claim_{j}_trees`` (int64 ``(T, 2)``: position ``p``, side ``s`` = +1 or -1),
  ``claim_{j}_tree_bounds`` (float64 ``(T,)``: ``b``) and tree ``t``'s arrays
  ``claim_{j}_{t}_...`` (as a region's tree, of one row, with splits of the ReLU layers before
  ``j`` only): a tree of the network cut at the ``j``-th ReLU layer's input (its output: that
  input) refuting ``s x_p < b`` on the region's box, from the earlier layers' proven bounds.
  Claims may come in stages (bounds tightened after others were found): stage ``s >= 1``'s
  arrays are named ``r{i}_s{s}_claim_...``, and each stage is proven from the bounds the
  stages before it proved.

A region may have several trees, each refuting some of its clauses on the whole box: the
header's region entry then lists ``trees`` (clause indices per tree), and tree ``t >= 1``'s
arrays are named ``r{i}_t{t}_...``; without ``trees``, one tree refutes every clause.

A node whose clauses are not all refuted must have children: a lower and an upper half with
the same ``dim`` and ``point``, or one re-bound node.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass

import numpy as np

from verify_check import FORMAT, VERSION

ROOT, LOW, HIGH, REBOUND, INACTIVE, ACTIVE = 0, 1, 2, 3, 4, 5


class CertificateError(ValueError):
    """The certificate is malformed or contradicts itself (the message says where)."""


class CoverageError(CertificateError):
    """The tree is well formed but its nodes do not cover the box (a half missing, halves cut
    at different places): the proof is invalid, not unreadable."""


@dataclass(frozen=True)
class Tree:
    """One tree of a region (see the module docstring); ``children[i]``: node ``i``'s children;
    per-node data by node (``*_index``: node -> row) and ReLU layer position; ``clauses``: the
    clauses (indices) it refutes."""

    parent: np.ndarray
    kind: np.ndarray
    dim: np.ndarray
    point: np.ndarray
    neuron: np.ndarray
    clips: dict[int, tuple[np.ndarray, np.ndarray]]
    alpha_index: dict[int, int]
    alpha: dict[int, np.ndarray]
    beta_index: dict[int, int]
    beta: dict[int, np.ndarray]
    children: list[list[int]]
    lower_index: dict[int, int]
    lower: dict[int, np.ndarray]
    clauses: list[int]


@dataclass(frozen=True)
class Claims:
    """A region's claimed bounds (see the module docstring), by ReLU layer ordinal: ``lower``
    and ``upper`` ``(n_j,)``, ``rows`` ``(P_j,)``, ``slopes[j][k]`` ``(2, P_j, n_k)`` and
    ``trees[j]``: (position, side, bound, tree) per claim tree."""

    lower: dict[int, np.ndarray]
    upper: dict[int, np.ndarray]
    rows: dict[int, np.ndarray]
    slopes: dict[int, dict[int, np.ndarray]]
    trees: dict[int, list[tuple[int, int, float, Tree]]]


def region_claims(arrays: dict[str, np.ndarray], prefix: str, inputs: int, relu_sizes: list[int]
                  ) -> Claims | None:
    """The claims of a region (arrays named ``prefix...``; None when it has none), shapes and
    ranges checked."""
    if f"{prefix}claim_lower_0" not in arrays:
        return None
    claims = Claims({}, {}, {}, {}, {})
    for j, size in enumerate(relu_sizes):
        lower = _array(arrays, f"{prefix}claim_lower_{j}", "f", 1).astype(np.float64)
        upper = _array(arrays, f"{prefix}claim_upper_{j}", "f", 1).astype(np.float64)
        rows = _array(arrays, f"{prefix}claim_rows_{j}", "i", 1).astype(np.int64)
        if lower.shape != (size,) or upper.shape != (size,) or np.any(np.isnan(lower) | np.isnan(upper)):
            raise CertificateError(f"{prefix}claim_lower_{j}/upper: shape or values do not fit layer {j} ({size})")
        if np.any((rows < 0) | (rows >= size)) or np.unique(rows).size != rows.size:
            raise CertificateError(f"{prefix}claim_rows_{j}: positions out of range or repeated")
        claims.lower[j], claims.upper[j], claims.rows[j], claims.slopes[j] = lower, upper, rows, {}
        for k in range(j):
            name = f"{prefix}claim_slopes_{j}_{k}"
            if name in arrays:
                slopes = _array(arrays, name, "f", 3).astype(np.float64)
                if slopes.shape != (2, rows.size, relu_sizes[k]) or not np.all((slopes >= 0) & (slopes <= 1)):
                    raise CertificateError(f"{name}: shape {slopes.shape} or a slope outside [0, 1]")
                claims.slopes[j][k] = slopes
        name = f"{prefix}claim_{j}_tree"
        sides = _array(arrays, name + "s", "i", 2) if name + "s" in arrays else np.zeros((0, 2), np.int64)
        ends = _array(arrays, name + "_bounds", "f", 1) if name + "s" in arrays else np.zeros(0)
        if sides.shape[1] != 2 or ends.shape != (sides.shape[0],) or np.any(np.isnan(ends)) or \
                np.any((sides[:, 0] < 0) | (sides[:, 0] >= size) | (np.abs(sides[:, 1]) != 1)):
            raise CertificateError(f"{name}s: not (position, side +-1) pairs of layer {j} with a bound each")
        claims.trees[j] = [(p, side, float(end), region_tree(arrays, f"{prefix}claim_{j}_{t}_", inputs, 1,
                                                             relu_sizes[:j], [0]))
                           for t, ((p, side), end) in enumerate(zip(sides.tolist(), ends, strict=True))]
    return claims


def read_certificate(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and the arrays of a certificate file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CertificateError(f"{path}: not a certificate archive ({exc})") from None
    if "header" not in arrays:
        raise CertificateError(f"{path}: no header")
    try:
        header = json.loads(bytes(arrays.pop("header")).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CertificateError(f"{path}: unreadable header ({exc})") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CertificateError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}; "
                               f"this checker reads {FORMAT!r} version {VERSION}")
    return header, arrays


def _array(arrays: dict[str, np.ndarray], name: str, kind: str, ndim: int) -> np.ndarray:
    if name not in arrays:
        raise CertificateError(f"array {name!r} is missing")
    value = arrays[name]
    if value.dtype.kind != kind or value.ndim != ndim:
        raise CertificateError(f"array {name!r} has dtype {value.dtype} and {value.ndim} dimensions")
    return value


def _nodes(arrays: dict[str, np.ndarray], name: str, count: int) -> np.ndarray:
    """Node ids ``name`` (int64, each in range, none repeated)."""
    nodes = _array(arrays, name, "i", 1).astype(np.int64)
    if np.any((nodes < 0) | (nodes >= count)) or np.unique(nodes).size != nodes.size:
        raise CertificateError(f"{name}: node ids out of range or repeated")
    return nodes


def _per_row(arrays: dict[str, np.ndarray], name: str, count: int, rows: int, relu_sizes: list[int],
             top: float) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """Per-row values ``{name}_{j}`` ``(A, rows, n_j)`` in ``[0, top]`` of the nodes ``{name}_node``."""
    nodes = _nodes(arrays, f"{name}_node", count)
    found = {}
    for j, size in enumerate(relu_sizes):
        if f"{name}_{j}" in arrays:
            values = _array(arrays, f"{name}_{j}", "f", 3).astype(np.float64)
            if values.shape != (nodes.size, rows, size) or not np.all((values >= 0) & (values <= top)):
                raise CertificateError(f"{name}_{j}: shape {values.shape} (expected {(nodes.size, rows, size)}) or "
                                       f"a value outside [0, {top:g}]")
            found[j] = values
    return {int(n): i for i, n in enumerate(nodes)}, found


def _children(parent: np.ndarray, kind: np.ndarray, dim: np.ndarray, point: np.ndarray, neuron: np.ndarray,
              inputs: int, relu_sizes: list[int]) -> list[list[int]]:
    count = parent.size
    if count == 0 or parent[0] != -1 or kind[0] != ROOT:
        raise CertificateError("node 0 must be the root (parent -1, kind 0)")
    index = np.arange(count)
    if np.any(parent[1:] < 0) or np.any(parent[1:] >= index[1:]):
        raise CertificateError("every node after the root must come after its parent")
    if np.any(kind[1:] == ROOT) or np.any((kind < 0) | (kind > ACTIVE)):
        raise CertificateError("node kinds must be 1 to 5 after the root")
    halves, splits = (kind == LOW) | (kind == HIGH), (kind == INACTIVE) | (kind == ACTIVE)
    layer = np.clip(dim, 0, max(len(relu_sizes) - 1, 0))
    sizes = np.array(relu_sizes or [0])[layer]
    bad = (halves & ((dim < 0) | (dim >= inputs) | ~np.isfinite(point))) | \
        (splits & ((dim < 0) | (dim >= len(relu_sizes)) | (neuron < 0) | (neuron >= sizes)))
    if bad.any():
        raise CertificateError(f"node {int(np.nonzero(bad)[0][0])}: a half needs an input dimension and a finite "
                               "point, a ReLU split a ReLU layer and a neuron in it")
    children: list[list[int]] = [[] for _ in range(count)]
    for child, up in enumerate(parent[1:].tolist(), start=1):
        children[up].append(child)
    for node, kids in enumerate(children):
        kinds = sorted(int(kind[k]) for k in kids)
        if kinds in ([LOW, HIGH], [INACTIVE, ACTIVE]):
            a, b = kids
            if dim[a] != dim[b] or neuron[a] != neuron[b] or (kinds[0] == LOW and point[a] != point[b]):
                raise CoverageError(f"node {node}: its children {a} and {b} are split at different places")
        elif kinds not in ([], [REBOUND]):
            raise CoverageError(f"node {node}: children {kids} are neither two halves, two sides of a ReLU split "
                                "nor one re-bound node")
    return children


def region_tree(arrays: dict[str, np.ndarray], p: str, inputs: int, rows: int, relu_sizes: list[int],
                clauses: list[int]) -> Tree:
    """The tree whose arrays are named ``p...``, refuting ``clauses``, its shape checked (see
    the module docstring)."""
    parent, kind = _array(arrays, p + "parent", "i", 1), _array(arrays, p + "kind", "i", 1)
    dim, point = _array(arrays, p + "dim", "i", 1), _array(arrays, p + "point", "f", 1)
    neuron = _array(arrays, p + "neuron", "i", 1) if p + "neuron" in arrays else np.full(parent.size, -1)
    if not parent.size == kind.size == dim.size == point.size == neuron.size:
        raise CertificateError(f"{p}: node arrays of different lengths")
    children = _children(parent, kind, dim, point.astype(np.float64), neuron, inputs, relu_sizes)
    clip_node = _nodes(arrays, p + "clip_node", parent.size)
    lower, upper = _array(arrays, p + "clip_lower", "f", 2), _array(arrays, p + "clip_upper", "f", 2)
    if lower.shape != upper.shape or lower.shape != (clip_node.size, inputs):
        raise CertificateError(f"{p}: clip arrays do not match the nodes or the input size")
    clips = {int(n): (lower[i].astype(np.float64), upper[i].astype(np.float64)) for i, n in enumerate(clip_node)}
    alpha_index, alpha = _per_row(arrays, p + "alpha", parent.size, rows, relu_sizes, 1.0)
    beta_index, beta = _per_row(arrays, p + "beta", parent.size, rows, relu_sizes, 3.4e38) \
        if p + "beta_node" in arrays else ({}, {})
    lower_node = _nodes(arrays, p + "lower_node", parent.size)
    bits_of: dict[int, np.ndarray] = {}
    for j, size in enumerate(relu_sizes):
        name = f"{p}lower_{j}"
        if name in arrays:
            bits = _array(arrays, name, "u", 2)
            if bits.shape != (lower_node.size, (size + 7) // 8):
                raise CertificateError(f"{name}: shape {bits.shape}, expected {(lower_node.size, (size + 7) // 8)}")
            bits_of[j] = np.unpackbits(bits, axis=1, count=size).astype(np.float64)
    return Tree(parent.astype(np.int64), kind.astype(np.int64), dim.astype(np.int64), point.astype(np.float64),
                neuron.astype(np.int64), clips, alpha_index, alpha, beta_index, beta, children,
                {int(n): i for i, n in enumerate(lower_node)}, bits_of, clauses)
