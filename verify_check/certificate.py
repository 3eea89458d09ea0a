"""Reading a certificate file and checking its tree's shape (not yet its bounds).

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays). ``header`` holds UTF-8 JSON:
``format`` ("verifier-certificate"), ``version`` (1), ``model_sha256``, ``spec_sha256``,
``float_model`` ("float32"), ``tool`` and ``regions``: one entry per input region of the
property in the file's order, ``{"certified": bool, "reason": str}``. For each certified
region ``i``, arrays named ``r{i}_...`` describe a tree of boxes, nodes numbered from 0 (the
root: the region's box widened to float32 corners) with every parent before its children:

- ``parent`` (int64 ``(N,)``, -1 for the root), ``kind`` (int8: 0 root, 1 lower half, 2 upper
  half, 3 re-bound: the parent's final box again), ``dim`` (int64: the split input of a half,
  else -1) and ``point`` (float64: where the parent's final box is cut; a lower half keeps
  ``x[dim] <= point``, an upper half ``x[dim] >= point``);
- ``clip_node`` (int64 ``(C,)``), ``clip_lower``/``clip_upper`` (float64 ``(C, n)``): nodes
  whose final box is this sub-box of their box (the rest refuted by the node's own linear
  bounds, see :mod:`verify_check.tree`);
- ``alpha_node`` (int64 ``(A,)``) and ``alpha_{j}`` (float32 ``(A, R, n_j)``): lower slopes
  in ``[0, 1]`` of the ``j``-th ReLU layer's neurons for each of the region's ``R`` spec rows
  (clauses in order, rows in order), used at those nodes besides the default slopes;
- ``lower_node`` (int64 ``(L,)``) and ``lower_{j}`` (uint8 ``(L, ceil(n_j / 8))``, NumPy's
  ``packbits`` of one bit per neuron): a lower slope 0 or 1 per neuron of the ``j``-th ReLU
  layer for all rows of those nodes, also used besides the default slopes (CROWN's choice
  of slope depends on the intermediate bounds, which the checker computes its own way).

A node whose clauses are not all refuted must have children: a lower and an upper half with
the same ``dim`` and ``point``, or one re-bound node.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass

import numpy as np

from verify_check import FORMAT, VERSION

ROOT, LOW, HIGH, REBOUND = 0, 1, 2, 3


class CertificateError(ValueError):
    """The certificate is malformed or contradicts itself (the message says where)."""


class CoverageError(CertificateError):
    """The tree is well formed but its nodes do not cover the box (a half missing, halves cut
    at different places): the proof is invalid, not unreadable."""


@dataclass(frozen=True)
class Tree:
    """One region's tree (see the module docstring); ``children[i]``: node ``i``'s children."""

    parent: np.ndarray
    kind: np.ndarray
    dim: np.ndarray
    point: np.ndarray
    clips: dict[int, tuple[np.ndarray, np.ndarray]]
    alpha_index: dict[int, int]
    alpha: dict[int, np.ndarray]
    children: list[list[int]]
    lower_index: dict[int, int]
    lower: dict[int, np.ndarray]


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


def _children(parent: np.ndarray, kind: np.ndarray, dim: np.ndarray, point: np.ndarray, inputs: int
              ) -> list[list[int]]:
    count = parent.size
    if count == 0 or parent[0] != -1 or kind[0] != ROOT:
        raise CertificateError("node 0 must be the root (parent -1, kind 0)")
    index = np.arange(count)
    if np.any(parent[1:] < 0) or np.any(parent[1:] >= index[1:]):
        raise CertificateError("every node after the root must come after its parent")
    if np.any(kind[1:] == ROOT) or np.any((kind < 0) | (kind > REBOUND)):
        raise CertificateError("node kinds must be 1, 2 or 3 after the root")
    halves = (kind == LOW) | (kind == HIGH)
    if np.any(halves & ((dim < 0) | (dim >= inputs) | ~np.isfinite(point))):
        bad = int(np.nonzero(halves & ((dim < 0) | (dim >= inputs) | ~np.isfinite(point)))[0][0])
        raise CertificateError(f"node {bad}: a half needs an input dimension and a finite point")
    children: list[list[int]] = [[] for _ in range(count)]
    for child, up in enumerate(parent[1:].tolist(), start=1):
        children[up].append(child)
    for node, kids in enumerate(children):
        kinds = sorted(int(kind[k]) for k in kids)
        if kinds == [LOW, HIGH]:
            a, b = kids
            if dim[a] != dim[b] or point[a] != point[b]:
                raise CoverageError(f"node {node}: its halves {a} and {b} are cut at different places")
        elif kinds not in ([], [REBOUND]):
            raise CoverageError(f"node {node}: children {kids} are neither two halves nor one re-bound node")
    return children


def region_tree(arrays: dict[str, np.ndarray], region: int, inputs: int, rows: int, relu_sizes: list[int]) -> Tree:
    """Region ``region``'s tree, its shape checked (see the module docstring)."""
    p = f"r{region}_"
    parent, kind = _array(arrays, p + "parent", "i", 1), _array(arrays, p + "kind", "i", 1)
    dim, point = _array(arrays, p + "dim", "i", 1), _array(arrays, p + "point", "f", 1)
    if not parent.size == kind.size == dim.size == point.size:
        raise CertificateError(f"region {region}: node arrays of different lengths")
    children = _children(parent, kind, dim, point.astype(np.float64), inputs)
    clip_node = _array(arrays, p + "clip_node", "i", 1)
    lower, upper = _array(arrays, p + "clip_lower", "f", 2), _array(arrays, p + "clip_upper", "f", 2)
    if lower.shape != upper.shape or lower.shape != (clip_node.size, inputs) or \
            np.any((clip_node < 0) | (clip_node >= parent.size)) or np.unique(clip_node).size != clip_node.size:
        raise CertificateError(f"region {region}: clip arrays do not match the nodes or the input size")
    clips = {int(n): (lower[i].astype(np.float64), upper[i].astype(np.float64)) for i, n in enumerate(clip_node)}
    alpha_node = _array(arrays, p + "alpha_node", "i", 1)
    if np.any((alpha_node < 0) | (alpha_node >= parent.size)) or np.unique(alpha_node).size != alpha_node.size:
        raise CertificateError(f"region {region}: alpha nodes out of range or repeated")
    alpha = {}
    for j, size in enumerate(relu_sizes):
        name = f"{p}alpha_{j}"
        if name in arrays:
            slopes = _array(arrays, name, "f", 3).astype(np.float64)
            if slopes.shape != (alpha_node.size, rows, size):
                raise CertificateError(f"{name}: shape {slopes.shape}, expected {(alpha_node.size, rows, size)}")
            if not np.all((slopes >= 0) & (slopes <= 1)):
                raise CertificateError(f"{name}: a slope outside [0, 1]")
            alpha[j] = slopes
    lower_node = _array(arrays, p + "lower_node", "i", 1)
    if np.any((lower_node < 0) | (lower_node >= parent.size)) or np.unique(lower_node).size != lower_node.size:
        raise CertificateError(f"region {region}: lower-slope nodes out of range or repeated")
    bits_of: dict[int, np.ndarray] = {}
    for j, size in enumerate(relu_sizes):
        name = f"{p}lower_{j}"
        if name in arrays:
            bits = _array(arrays, name, "u", 2)
            if bits.shape != (lower_node.size, (size + 7) // 8):
                raise CertificateError(f"{name}: shape {bits.shape}, expected {(lower_node.size, (size + 7) // 8)}")
            bits_of[j] = np.unpackbits(bits, axis=1, count=size).astype(np.float64)
    return Tree(parent.astype(np.int64), kind.astype(np.int64), dim.astype(np.int64), point.astype(np.float64),
                clips, {int(n): i for i, n in enumerate(alpha_node)}, alpha, children,
                {int(n): i for i, n in enumerate(lower_node)}, bits_of)
