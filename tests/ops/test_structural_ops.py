"""Affine, convolution, pooling and shape ops against onnxruntime and by sampling.

For every case: ``forward`` equals onnxruntime (float32 and float64 evaluation), the
interval bounds contain the op's value at sampled points (uniform and random vertices) up to
``fp_error`` in float64, and ``fp_error`` at unit 2**-24 bounds the distance between
onnxruntime's float32 output and our float64 forward. All-constant cases check constant
folding (int64 shape arithmetic) and error cases check that unsupported input fails loudly.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from folding_cases import FOLDING
from structural_cases import CASES, FP_ONLY
from structural_helpers import NONE, Case, const, dyn, folded, forward, our_args, our_node, run_ort

from verifier.errors import ModelError
from verifier.ops import REGISTRY

ort.set_default_logger_severity(3)
BATCH = 3
SAMPLES = 2000


def _ids(cases: list[Case]) -> list[str]:
    return [str(c) for c in cases]


def _inputs(case: Case, rng: np.random.Generator) -> list[np.ndarray]:
    return [
        (rng.standard_normal((BATCH, *i.shape)) * 2).astype(np.float32)
        for i in case.inputs
        if i.dynamic
    ]


def _ort_batched(case: Case, xs: list[np.ndarray], optimize: bool = True) -> list[np.ndarray]:
    runs = run_ort(case, [[x[b] for x in xs] for b in range(BATCH)], optimize)
    return [np.stack([r[j] for r in runs]) for j in range(len(runs[0]))]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_forward_matches_onnxruntime(case: Case, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    xs = _inputs(case, rng)
    expected = _ort_batched(case, xs)
    ours = forward(case, xs, dtype)
    assert len(ours) == len(expected)
    for got, ref in zip(ours, expected, strict=True):
        assert tuple(got.shape) == ref.shape, f"{case}: shape {tuple(got.shape)} != {ref.shape}"
        if got.is_floating_point():
            assert got.dtype == dtype
        np.testing.assert_allclose(
            got.double().numpy(), ref.astype(np.float64), rtol=1e-5, atol=1e-5
        )


def _boxes(case: Case, rng: np.random.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three boxes per dynamic input: degenerate, narrow, and wide across zero."""
    lows, highs = [], []
    for inp in case.inputs:
        if not inp.dynamic:
            continue
        centre = rng.standard_normal((BATCH, *inp.shape)) * 2
        radius = np.stack(
            [np.zeros(inp.shape), rng.uniform(0, 0.1, inp.shape), rng.uniform(0, 3, inp.shape)]
        )
        lows.append(torch.from_numpy(centre - radius))
        highs.append(torch.from_numpy(centre + radius))
    return lows, highs


def _bounds(case: Case, lows: list[torch.Tensor], highs: list[torch.Tensor], unit: float):
    node, kept = our_node(case)
    op = REGISTRY[case.op]
    lo_args, flags = our_args(case, kept, lows, torch.float64)
    hi_args, _ = our_args(case, kept, highs, torch.float64)
    hi_args = [h if f else lo for h, lo, f in zip(hi_args, lo_args, flags, strict=True)]
    out = op.interval(node, lo_args, hi_args, flags)
    errs = op.fp_error(node, lo_args, hi_args, flags, out, unit)
    return out, errs


def _samples(
    lows: list[torch.Tensor], highs: list[torch.Tensor], rng: np.random.Generator
) -> list[np.ndarray]:
    """SAMPLES points per box: half uniform, half random vertices; shape (SAMPLES*BATCH, ...)."""
    out = []
    for lo, hi in zip(lows, highs, strict=True):
        lo_n, hi_n = lo.numpy(), hi.numpy()
        u = rng.uniform(size=(SAMPLES, *lo_n.shape))
        points = np.clip(lo_n + u * (hi_n - lo_n), lo_n, hi_n)
        half = SAMPLES // 2
        points[half:] = np.where(u[half:] < 0.5, lo_n, hi_n)
        out.append(points.reshape(SAMPLES * lo_n.shape[0], *lo_n.shape[1:]))
    return out


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_interval_contains_samples(case: Case) -> None:
    rng = np.random.default_rng(1)
    lows, highs = _boxes(case, rng)
    (out_lo, out_hi), errs = _bounds(case, lows, highs, 2.0**-53)
    values = forward(case, _samples(lows, highs, rng), torch.float64)
    for lo, hi, err, val in zip(out_lo, out_hi, errs, values, strict=True):
        if not lo.is_floating_point():
            continue
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all(), f"{case}: vacuous bounds"
        slack = 2 * (err if err is not None else 0.0) + 1e-300
        val = val.reshape(SAMPLES, *lo.shape)
        assert (val >= lo - slack).all(), f"{case}: sample below the lower bound"
        assert (val <= hi + slack).all(), f"{case}: sample above the upper bound"
        assert (lo <= hi + slack).all()


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_degenerate_box_is_the_value(case: Case) -> None:
    rng = np.random.default_rng(2)
    xs = _inputs(case, rng)
    boxes = [torch.from_numpy(x).double() for x in xs]
    (out_lo, out_hi), _ = _bounds(case, boxes, boxes, 2.0**-53)
    for lo, hi, val in zip(out_lo, out_hi, forward(case, xs), strict=True):
        if lo.is_floating_point():
            torch.testing.assert_close(lo, val.to(lo.dtype), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(hi, val.to(hi.dtype), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES + FP_ONLY, ids=_ids(CASES + FP_ONLY))
@pytest.mark.parametrize("optimize", [True, False], ids=["ort-opt", "ort-plain"])
def test_fp_error_bounds_onnxruntime(case: Case, optimize: bool) -> None:
    rng = np.random.default_rng(3)
    xs = _inputs(case, rng)
    expected = _ort_batched(case, xs, optimize)
    boxes = [torch.from_numpy(x).double() for x in xs]
    _, errs32 = _bounds(case, boxes, boxes, 2.0**-24)
    _, errs64 = _bounds(case, boxes, boxes, 2.0**-53)
    for ref, ours, e32, e64 in zip(expected, forward(case, xs), errs32, errs64, strict=True):
        if not ours.is_floating_point():
            continue
        diff = (torch.from_numpy(ref.astype(np.float64)) - ours).abs()
        bound = (e32 if e32 is not None else 0.0) + (e64 if e64 is not None else 0.0)
        assert (diff <= bound).all(), f"{case}: max excess {(diff - bound).max().item()}"


@pytest.mark.parametrize("case", FOLDING, ids=_ids(FOLDING))
def test_constant_folding_matches_onnxruntime(case: Case) -> None:
    ours = folded(case)
    refs = run_ort(case, [[]])[0]
    for got, ref in zip(ours, refs, strict=True):
        assert got.shape[0] == 1, "folding must return a batch of 1"
        got = got[0]
        assert tuple(got.shape) == ref.shape
        if ref.dtype.kind in "iub":
            assert got.numpy().dtype == ref.dtype, f"{case}: dtype {got.dtype} != {ref.dtype}"
            np.testing.assert_array_equal(got.numpy(), ref)
        else:
            np.testing.assert_allclose(
                got.double().numpy(), ref.astype(np.float64), rtol=1e-6, atol=1e-7
            )


def _raises(case: Case, bounds: bool = False, batched_const: int | None = None) -> None:
    node, kept = our_node(case)
    xs = [torch.zeros(2, *i.shape) for i in case.inputs if i.dynamic]
    args, flags = our_args(case, kept, xs, torch.float64)
    if batched_const is not None:
        arg = args[batched_const]
        assert arg is not None
        args[batched_const], flags[batched_const] = arg.unsqueeze(0).expand(2, *arg.shape), True
    op = REGISTRY[case.op]
    with pytest.raises(ModelError, match="n0"):
        if bounds:
            op.interval(node, args, args, flags)
        else:
            op.forward(node, args, flags)


def test_unsupported_attributes_raise() -> None:
    x = dyn(1, 2, 4, 4)
    kernel = const(np.ones((2, 2, 3, 3), np.float32))
    _raises(Case("Conv", [x, kernel], {"auto_pad": "WEIRD"}))
    _raises(Case("Conv", [x, kernel], {"auto_pad": "SAME_UPPER", "dilations": [2, 2]}))
    _raises(
        Case(
            "Resize",
            [x, NONE, const(np.array([1, 1, 2, 2], np.float32))],
            {"mode": "cubic"},
            opset=13,
        )
    )
    _raises(
        Case(
            "Resize",
            [x, NONE, const(np.array([1, 1, 2, 2], np.float32))],
            {"coordinate_transformation_mode": "tf_crop_and_resize"},
            opset=13,
        )
    )
    _raises(
        Case(
            "Resize",
            [x, NONE, const(np.array([1, 1, 0.5, 0.5], np.float32))],
            {"mode": "linear", "antialias": 1},
            opset=18,
        )
    )
    _raises(
        Case("Pad", [x, const(np.array([0, 0, 1, 1, 0, 0, 1, 1]))], {"mode": "mirror"}, opset=13)
    )
    _raises(Case("Cast", [x], {"to": 7}), bounds=True)
    _raises(Case("Cast", [x], {"to": 8}))
    _raises(
        Case(
            "BatchNormalization",
            [x, *[const(np.ones(2, np.float32))] * 4],
            {"training_mode": 1},
            opset=15,
        )
    )
    _raises(Case("Dropout", [x, const(np.float32(0.5)), const(np.array(True))], opset=13))
    _raises(Case("Reshape", [x, const(np.array([3, -1]))]))
    _raises(Case("Einsum", [dyn(2, 3), dyn(3, 4), dyn(4)], {"equation": "ij,jk,k->i"}), bounds=True)


def test_scatter_refusals_name_the_node() -> None:
    """Product reduction, positions written twice without a reduction (ONNX leaves the
    result undefined) and dynamic indices are refused with the node named."""
    rows = const(np.array([[1], [1]], np.int64))
    _raises(Case("ScatterND", [dyn(3, 2), rows, dyn(2, 2)], {"reduction": "mul"}, opset=18))
    _raises(Case("ScatterND", [dyn(3, 2), rows, dyn(2, 2)]))
    _raises(Case("ScatterElements", [dyn(3, 2), const(np.array([[0, 0]], np.int64)), dyn(1, 2)], {"axis": 1}))
    _raises(Case("ScatterND", [dyn(3, 2), const(np.array([[3]], np.int64)), dyn(1, 2)]))
    _raises(Case("ScatterND", [dyn(3, 2), const(np.array([[0]], np.int64)), dyn(1, 2)]), bounds=True,
            batched_const=1)


def test_layer_normalization_refusals_name_the_node() -> None:
    """The optional Mean and InvStdDev outputs, a Scale computed by the network and an axis out
    of range are refused with the node named."""
    scale = const(np.ones(4, np.float32))
    _raises(Case("LayerNormalization", [dyn(2, 4), scale], outputs=2))
    _raises(Case("LayerNormalization", [dyn(2, 4), scale]), bounds=True, batched_const=1)
    _raises(Case("LayerNormalization", [dyn(2, 4), scale], {"axis": 2}))


def test_dynamic_weights_raise() -> None:
    x = dyn(1, 2, 4, 4)
    kernel = const(np.ones((2, 2, 3, 3), np.float32))
    _raises(Case("Conv", [x, kernel]), batched_const=1)
    _raises(Case("Conv", [x, kernel]), bounds=True, batched_const=1)
    _raises(Case("ConvTranspose", [x, kernel]), bounds=True, batched_const=1)
    _raises(
        Case("Linear", [dyn(3), const(np.ones((3, 2), np.float32))]), bounds=True, batched_const=1
    )
    _raises(Case("Gather", [dyn(3), const(np.array([0, 1]))]), bounds=True, batched_const=1)


def test_pool_window_entirely_in_padding_raises() -> None:
    case = Case("MaxPool", [dyn(1, 1, 3)], {"kernel_shape": [2], "pads": [2, 0]})
    _raises(case)


def test_linear_fp_stages_and_slack_widen_the_error() -> None:
    base = Case("Linear", [dyn(1, 5), const(np.ones((5, 3), np.float32))])
    tuned = Case("Linear", base.inputs, {"fp_stages": 4, "fp_slack": np.full(3, 10.0)})
    box = [torch.ones(2, 1, 5)]
    (_, e_base), (_, e_tuned) = (_bounds(c, box, box, 2.0**-24) for c in (base, tuned))
    assert e_base[0] is not None and e_tuned[0] is not None
    assert (e_tuned[0] > e_base[0]).all()


def test_conv_fp_slack_is_per_output_channel() -> None:
    weights = const(np.ones((3, 2, 2, 2), np.float32))
    # a zero slack still marks the node as folded: both take the plain bound (no partial sums)
    base = Case("Conv", [dyn(1, 2, 4, 4), weights], {"fp_slack": np.zeros(3)})
    slack = np.array([0.0, 1.0, 100.0])
    box = [torch.ones(2, 1, 2, 4, 4)]
    for given in (slack, slack.reshape(3, 1, 1)):  # 1-D, or the loader's (M, 1, 1)
        tuned = Case("Conv", base.inputs, {"fp_slack": given})
        (_, e_base), (_, e_tuned) = (_bounds(c, box, box, 2.0**-24) for c in (base, tuned))
        assert e_base[0] is not None and e_tuned[0] is not None
        extra = (e_tuned[0] - e_base[0])[0, 0, :, :, :]
        assert (extra[0] == 0).all() and (extra[1] > 0).all() and (extra[1] < extra[2]).all()


def test_conv_folds_model_batch_dimension() -> None:
    """A model batch N > 1 inside our batch B: each (b, n) sample is convolved separately."""
    case = Case("Conv", [dyn(3, 2, 5, 5), const(np.ones((1, 2, 2, 2), np.float32))])
    xs = [np.random.default_rng(4).standard_normal((2, 3, 2, 5, 5)).astype(np.float32)]
    (y,) = forward(case, xs)
    single = Case("Conv", [dyn(1, 2, 5, 5), case.inputs[1]])
    for b in range(2):
        for n in range(3):
            (ref,) = forward(single, [xs[0][b : b + 1, n : n + 1]])
            torch.testing.assert_close(y[b, n], ref[0, 0])


def _on_device(case: Case, device: str) -> None:
    """forward, interval and fp_error on ``device`` agree with the CPU results."""
    rng = np.random.default_rng(5)
    lows, highs = _boxes(case, rng)
    node, kept = our_node(case)
    op = REGISTRY[case.op]
    lo_args, flags = our_args(case, kept, lows, torch.float64)
    hi_args, _ = our_args(case, kept, highs, torch.float64)
    hi_args = [h if f else lo for h, lo, f in zip(hi_args, lo_args, flags, strict=True)]
    move = lambda ts: [None if t is None else t.to(device) for t in ts]  # noqa: E731
    d_lo, d_hi = move(lo_args), move(hi_args)
    d_hi = [h if f else lo for h, lo, f in zip(d_hi, d_lo, flags, strict=True)]
    results = []
    for lo, hi in ((lo_args, hi_args), (d_lo, d_hi)):
        out = op.interval(node, lo, hi, flags)
        errs = op.fp_error(node, lo, hi, flags, out, 2.0**-24)
        results.append((op.forward(node, lo, flags), *out, errs))
    for cpu_part, dev_part in zip(*results, strict=True):
        for a, b in zip(cpu_part, dev_part, strict=True):
            if a is None or b is None:
                assert a is None and b is None
                continue
            assert b.device.type == torch.device(device).type
            torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_cuda_matches_cpu(case: Case) -> None:
    _on_device(case, "cuda")


def test_device_check_itself_runs_on_cpu() -> None:
    """Keeps the CUDA comparison's own code exercised where no GPU is present."""
    for case in CASES[:: max(1, len(CASES) // 10)]:
        _on_device(case, "cpu")
