"""Certificates of bundled ACAS Xu ``unsat`` answers: every one checks ``valid``, and broken
ones are rejected with the place named.

The checker is the oracle of a certificate, so it is tested too: mutations that make the proof
wrong (a dropped leaf, a split point moved so that the halves no longer meet, a slope out of
range, slopes that no longer refute, a model weight changed so that the property is violated,
another property) must each be rejected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from verifier.api import verify
from verify_check.cli import INVALID, UNREADABLE, VALID, check, main

ACAS = Path(__file__).resolve().parents[2] / "benchmarks" / "acasxu"
QUICK = [("1_1", "prop_1"), ("2_1", "prop_3"), ("1_2", "prop_4"), ("4_5", "prop_10"), ("1_6", "prop_3")]


def _paths(net: str, prop: str) -> tuple[Path, Path]:
    return ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", ACAS / "vnnlib" / f"{prop}.vnnlib"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """A certificate per quick instance, written by ``verify``."""
    folder = tmp_path_factory.mktemp("certificates")
    made = {}
    for net, prop in QUICK:
        model, spec = _paths(net, prop)
        path = folder / f"{net}_{prop}.npz"
        result = verify(model, spec, timeout=120, certificate=path)
        assert result.status.value == "unsat", (net, prop, result.status)
        assert result.stats["certificate"]["regions_certified"] == 1
        made[(net, prop)] = path
    return made


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


def _save(arrays: dict[str, np.ndarray], path: Path) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _expected_unsat() -> list[tuple[str, str]]:
    rows = (ACAS / "expected.csv").read_text().splitlines()[1:]
    found = []
    for row in rows:
        onnx_path, vnnlib, verdict = row.split(",")
        if verdict == "unsat":
            found.append((onnx_path.split("run2a_")[1].removesuffix("_batch_2000.onnx"), Path(vnnlib).stem))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("instance", [i for i in _expected_unsat() if i not in QUICK], ids=lambda i: "_".join(i))
def test_every_unsat_certificate_checks_valid(instance: tuple[str, str], tmp_path: Path) -> None:
    """All 139 bundled ACAS Xu unsat instances (the quick five below run by default; these with
    ``pytest -m slow``, about 5 minutes on two cores): unsat, and a valid certificate."""
    model, spec = _paths(*instance)
    path = tmp_path / "proof.npz"
    assert verify(model, spec, timeout=116, certificate=path).status.value == "unsat"
    code, message = check(str(model), str(spec), str(path))
    assert code == VALID, message


@pytest.mark.parametrize("instance", QUICK, ids=lambda i: "_".join(i))
def test_certificate_checks_valid(certificates: dict, instance: tuple[str, str]) -> None:
    model, spec = _paths(*instance)
    code, message = check(str(model), str(spec), str(certificates[instance]))
    assert code == VALID, message
    assert message.startswith("valid")


def test_command_line_exit_codes(certificates: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model, spec = _paths("2_1", "prop_3")
    assert main([str(model), str(spec), str(certificates[("2_1", "prop_3")])]) == VALID
    assert capsys.readouterr().out.startswith("valid")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main([str(model), str(spec), str(tmp_path / "junk.npz")]) == UNREADABLE


def _leaf_pair(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """Two sibling halves that are both leaves (the last such pair)."""
    parent, kind = arrays["r0_parent"], arrays["r0_kind"]
    has_child = np.zeros(parent.size, dtype=bool)
    has_child[parent[parent >= 0]] = True
    for node in range(parent.size - 1, 0, -1):
        if kind[node] == 2 and not has_child[node]:
            sibling = [s for s in np.nonzero(parent == parent[node])[0] if s != node and kind[s] == 1]
            if sibling and not has_child[sibling[0]]:
                return int(sibling[0]), node
    raise AssertionError("no pair of leaf halves")


def test_dropped_leaf_is_rejected(certificates: dict, tmp_path: Path) -> None:
    model, spec = _paths("2_1", "prop_3")
    arrays = _arrays(certificates[("2_1", "prop_3")])
    _, leaf = _leaf_pair(arrays)
    keep = np.arange(arrays["r0_parent"].size) != leaf
    for name in ("r0_parent", "r0_kind", "r0_dim", "r0_point"):
        arrays[name] = arrays[name][keep]
    arrays["r0_parent"] = np.where(arrays["r0_parent"] > leaf, arrays["r0_parent"] - 1, arrays["r0_parent"])
    for table in ("clip", "alpha", "lower"):
        nodes = arrays[f"r0_{table}_node"]
        mask = nodes != leaf
        for name in [k for k in arrays if k.startswith(f"r0_{table}_")]:
            arrays[name] = arrays[name][mask]
        arrays[f"r0_{table}_node"] = np.where(nodes[mask] > leaf, nodes[mask] - 1, nodes[mask])
    code, message = check(str(model), str(spec), str(_save(arrays, tmp_path / "dropped.npz")))
    parent = int(_arrays(certificates[("2_1", "prop_3")])["r0_parent"][leaf])
    assert code == INVALID and f"node {parent}" in message, message


def test_moved_split_point_is_rejected(certificates: dict, tmp_path: Path) -> None:
    """The lower half cut below its sibling's start: a gap the halves do not cover."""
    model, spec = _paths("2_1", "prop_3")
    arrays = _arrays(certificates[("2_1", "prop_3")])
    low, _ = _leaf_pair(arrays)
    arrays["r0_point"] = arrays["r0_point"].copy()
    arrays["r0_point"][low] = np.nextafter(arrays["r0_point"][low], -np.inf)
    code, message = check(str(model), str(spec), str(_save(arrays, tmp_path / "moved.npz")))
    assert code == INVALID and "at different places" in message, message


def test_slope_out_of_range_is_rejected(certificates: dict, tmp_path: Path) -> None:
    model, spec = _paths("2_1", "prop_3")
    arrays = _arrays(certificates[("2_1", "prop_3")])
    arrays["r0_alpha_node"] = np.array([0])
    arrays["r0_alpha_0"] = np.full((1, 4, 50), 1.5, dtype=np.float32)
    code, message = check(str(model), str(spec), str(_save(arrays, tmp_path / "slope.npz")))
    assert code == UNREADABLE and "outside [0, 1]" in message, message


def _leaf_of(message: str) -> int:
    return int(message.split("leaf ")[1].split(":")[0])


def test_changed_slopes_are_rejected_where_the_proof_needs_them(certificates: dict, tmp_path: Path) -> None:
    """With the recorded lower slopes removed, a leaf is left unrefuted (the checker's own
    default slopes alone do not refute it: CROWN's slope choice depends on intermediate
    bounds, which the checker computes its own way). With the slopes of that leaf and its
    ancestors all set to 0, or all to 1, the certificate is rejected at least once, and every
    rejection names a leaf; as written it is valid."""
    model, spec = _paths("2_1", "prop_3")
    arrays = _arrays(certificates[("2_1", "prop_3")])
    names = [k for k in arrays if k.startswith("r0_lower_") and k != "r0_lower_node"]
    stripped = {**arrays, **{k: arrays[k][:0] for k in [*names, "r0_lower_node"]}}
    code, message = check(str(model), str(spec), str(_save(stripped, tmp_path / "stripped.npz")))
    assert code == INVALID and "leaf" in message, message
    path, node = [], _leaf_of(message)
    while node >= 0:
        path.append(node)
        node = int(arrays["r0_parent"][node])
    rows = np.isin(arrays["r0_lower_node"], path)
    rejected = 0
    for bit in (0, 255):
        changed = dict(arrays)
        for name in names:
            changed[name] = arrays[name].copy()
            changed[name][rows] = bit
        code, message = check(str(model), str(spec), str(_save(changed, tmp_path / f"slopes{bit}.npz")))
        assert code in (VALID, INVALID) and (code == VALID or "leaf" in message), message
        rejected += code == INVALID
    assert rejected


def test_perturbed_weight_is_rejected(certificates: dict, tmp_path: Path) -> None:
    """Output 0's bias lowered by 100: Y_0 is then the minimum everywhere, which prop_3 says
    never happens (onnxruntime confirms it at the box's centre). The certificate, re-labelled
    with the new model's hash, must not check."""
    model, spec = _paths("2_1", "prop_3")
    proto = onnx.load(model)
    bias = next(t for t in proto.graph.initializer if t.name == "linear_7_Add_B")
    value = numpy_helper.to_array(bias).copy()
    value[0] -= 100.0
    bias.CopyFrom(numpy_helper.from_array(value, bias.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(proto, changed)
    centre = np.array([[[[-0.3035, -0.0095, 0.4934, 0.3, 0.3]]]], dtype=np.float32)
    y = ort.InferenceSession(str(changed)).run(None, {"input": centre})[0].reshape(-1)
    assert y[0] == y.min()
    arrays = _arrays(certificates[("2_1", "prop_3")])
    header = json.loads(bytes(arrays["header"]).decode())
    assert check(str(changed), str(spec), str(certificates[("2_1", "prop_3")]))[0] == INVALID  # the hash
    header["model_sha256"] = hashlib.sha256(changed.read_bytes()).hexdigest()
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    code, message = check(str(changed), str(spec), str(_save(arrays, tmp_path / "relabelled.npz")))
    assert code == INVALID and "not refuted" in message, message


def _relabelled(arrays: dict[str, np.ndarray], spec: Path) -> dict[str, np.ndarray]:
    header = json.loads(bytes(arrays["header"]).decode())
    header["spec_sha256"] = hashlib.sha256(spec.read_bytes()).hexdigest()
    return {**arrays, "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}


def test_changed_property_is_rejected(certificates: dict, tmp_path: Path) -> None:
    """prop_1's threshold (the violation is ``Y_0 >= 3.9911...``) moved one float step down:
    another property, rejected by its hash. Relabelled with the new hash, the checker
    re-derives every bound on the property it is given: moved below a value the network
    reaches in the box (onnxruntime, at sampled points), the property is violated and the
    certificate is rejected with a leaf named."""
    model, spec = _paths("1_1", "prop_1")
    text = spec.read_text()
    assert "3.991125645861615" in text
    moved = tmp_path / "prop_1_moved.vnnlib"
    moved.write_text(text.replace("3.991125645861615", repr(float(np.nextafter(3.991125645861615, -np.inf)))))
    path = certificates[("1_1", "prop_1")]
    code, message = check(str(model), str(moved), str(path))
    assert code == INVALID and "another property" in message
    session = ort.InferenceSession(str(model))
    rng = np.random.default_rng(0)
    lower = np.array([0.6, -0.5, -0.5, 0.45, -0.5], dtype=np.float32)
    upper = np.array([0.679857769, 0.5, 0.5, 0.5, -0.45], dtype=np.float32)
    x = (lower + rng.random((2000, 5)) * (upper - lower)).astype(np.float32)
    reached = max(float(session.run(None, {"input": row.reshape(1, 1, 1, 5)})[0][0, 0]) for row in x[:300])
    violated = tmp_path / "prop_1_violated.vnnlib"
    violated.write_text(text.replace("3.991125645861615", repr(reached - 1e-3)))
    relabelled = _save(_relabelled(_arrays(path), violated), tmp_path / "relabelled.npz")
    code, message = check(str(model), str(violated), str(relabelled))
    assert code == INVALID and "not refuted" in message, message


def test_clips_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The format's clips (the search clips its boxes; the verifier turns that off when it
    writes a certificate, so it is forced back on here): such a certificate of 2_1 prop_3
    checks valid, and with one clip shrunk towards its middle it is rejected, naming the node."""
    import verifier.bab.input_split as input_split

    original = input_split.InputSplitSearch.__init__

    def clipping(self: input_split.InputSplitSearch, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.config = replace(self.config, clip_domains=True)

    monkeypatch.setattr(input_split.InputSplitSearch, "__init__", clipping)
    model, spec = _paths("2_1", "prop_3")
    path = tmp_path / "clipped.npz"
    assert verify(model, spec, timeout=120, certificate=path).status.value == "unsat"
    arrays = _arrays(path)
    assert arrays["r0_clip_node"].size > 0
    assert check(str(model), str(spec), str(path))[0] == VALID
    lower, upper = arrays["r0_clip_lower"].copy(), arrays["r0_clip_upper"].copy()
    middle = (lower[0] + upper[0]) / 2
    lower[0], upper[0] = (lower[0] + middle) / 2, (upper[0] + middle) / 2
    code, message = check(str(model), str(spec), str(_save({**arrays, "r0_clip_lower": lower, "r0_clip_upper": upper},
                                                           tmp_path / "shrunk.npz")))
    node = int(arrays["r0_clip_node"][0])
    assert code == INVALID and f"node {node}: the clip leaves out points" in message, message
