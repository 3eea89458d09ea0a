"""The checker's bounds on ReLU-split domains against onnxruntime: with some neurons split (their
bounds clamped to a side) and split multipliers ``beta`` in the backward pass, the row bounds
must hold at every sampled point whose pre-activations (onnxruntime's) lie on the split sides;
multipliers applied with the wrong sign (a planted bug) must be caught by the same check. The
claims checker must accept bounds it can prove and name one it cannot."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.verify_check.test_checker_bounds import write_chain
from verify_check.bounds import bound_values, relu_inputs, row_bounds
from verify_check.certificate import Claims
from verify_check.claims import ClaimError, checked_claims
from verify_check.model import read_model
from verify_check.spec import Region
from verify_check.tree import _clamped

C = np.array([[1.0, -1.0, 0.0], [0.0, 2.0, -0.5], [-1.0, 0.5, 1.0]])
D = np.array([0.25, -0.125, 0.0])


def _with_pre_activations(path: Path) -> ort.InferenceSession:
    """onnxruntime on the chain with its first two pre-activations (``z0``, ``z1``) as outputs."""
    model = onnx.load(path)
    for name in ("z0", "z1"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    wide = path.with_name("wide.onnx")
    onnx.save(model, wide)
    return ort.InferenceSession(str(wide))


def _violations(path: Path, seed: int, wrong_sign: bool = False, leaky: bool = False) -> tuple[int, int]:
    """(points below the checker's split-domain row bounds, points in the domains) over a few
    random split patterns with random slopes and multipliers (``leaky``: LeakyRelu layers)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 4))
    write_chain(path, rng, n_in, [8, 8, 3], leak=0.1 if leaky else None)
    chain = read_model(str(path))
    session = _with_pre_activations(path)
    feeds = relu_inputs(chain)
    bad = inside = 0
    for _ in range(3):
        centre = rng.normal(size=n_in).astype(np.float32).astype(np.float64)
        lo, hi = ((centre + r).astype(np.float32).astype(np.float64) for r in (-1.0, 1.0))
        x = (lo + rng.random((4000, n_in)) * (hi - lo)).astype(np.float32)
        outs = [session.run(None, {"x": p[None]}) for p in x]
        y = np.stack([o[0].reshape(-1) for o in outs]).astype(np.float64)
        z = {v: np.stack([o[1 + k].reshape(-1) for o in outs]) for k, v in enumerate(feeds)}
        values = bound_values(chain, lo[None], hi[None], {})
        signs = {}
        for v in feeds:  # two unstable neurons of each ReLU input split, on the sides of a sampled point's
            unstable = np.nonzero((values.lo[v][0] < 0) & (values.hi[v][0] > 0))[0]
            s = np.zeros((1, values.lo[v].shape[1]))
            chosen = rng.permutation(unstable)[:2]
            s[0, chosen] = np.where(z[v][0, chosen] >= 0, 1.0, -1.0)
            signs[v] = s
        prior = _clamped({v: (values.lo[v], values.hi[v]) for v in feeds}, signs)
        values = bound_values(chain, lo[None], hi[None], prior)
        slopes = {v: rng.random((1, len(D), values.lo[v].shape[1])) for v in feeds}
        betas = {v: rng.uniform(0, 3, (1, len(D), s.shape[1])) * s[:, None, :] * (-1 if wrong_sign else 1)
                 for v, s in signs.items()}
        rows = row_bounds(chain, values, C, D, slopes, betas).lower[0]
        member = np.all([np.all(z[v] * signs[v] >= 0, axis=1) for v in feeds], axis=0)
        inside += int(member.sum())
        bad += int(((y[member] @ C.T - D) < rows).sum())
    return bad, inside


@pytest.mark.parametrize("leaky", [False, True], ids=["relu", "leaky"])
@pytest.mark.parametrize("seed", range(4))
def test_split_domain_bounds_hold_at_sampled_points(tmp_path: Path, seed: int, leaky: bool) -> None:
    bad, inside = _violations(tmp_path / "chain.onnx", seed, leaky=leaky)
    assert inside > 100  # the domains hold enough sampled points to test the bounds
    assert bad == 0


def test_multipliers_with_the_wrong_sign_are_caught(tmp_path: Path) -> None:
    """A planted bug: ``+beta s x`` instead of ``-beta s x`` (not <= 0 on the domain)."""
    assert sum(_violations(tmp_path / "chain.onnx", seed, wrong_sign=True)[0] for seed in range(4)) > 0


def test_claims_are_checked(tmp_path: Path) -> None:
    """Claims at the checker's own bounds are accepted (and what it returns holds them); a
    claim tighter than any proof is rejected, naming the layer and the neuron."""
    rng = np.random.default_rng(7)
    write_chain(tmp_path / "chain.onnx", rng, 3, [6, 6, 3])
    chain = read_model(str(tmp_path / "chain.onnx"))
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    values = bound_values(chain, lo[None], hi[None], {})
    feeds = relu_inputs(chain)
    claims = Claims({j: values.lo[v][0] - 1e-6 for j, v in enumerate(feeds)},
                    {j: values.hi[v][0] + 1e-6 for j, v in enumerate(feeds)},
                    {j: np.zeros(0, np.int64) for j in range(len(feeds))}, {j: {} for j in range(len(feeds))},
                    {j: [] for j in range(len(feeds))})
    box = Region((Fraction(-1),) * 3, (Fraction(1),) * 3, (np.eye(3)[:1],), (np.zeros(1),), (np.zeros(1, bool),))
    proven = checked_claims(chain, box, claims, {})
    for j, v in enumerate(feeds):
        assert np.all(proven[v][0] >= claims.lower[j]) and np.all(proven[v][1] <= claims.upper[j])
    wide = int(np.argmax(values.hi[feeds[1]][0] - values.lo[feeds[1]][0]))
    claims.upper[1][wide] = (values.lo[feeds[1]][0][wide] + values.hi[feeds[1]][0][wide]) / 2
    with pytest.raises(ClaimError, match=f"upper bound .* of ReLU layer 1's input {wide} is tighter"):
        checked_claims(chain, box, claims, {})
