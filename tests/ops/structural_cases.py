"""Single-node cases for the affine, convolution, pooling and shape ops.

``CASES`` have dynamic float inputs (checked against onnxruntime, by sampling and for their
float error); ``FP_ONLY`` cases are checked for their float error only. The all-constant
``FOLDING`` cases are in :mod:`folding_cases`.
"""

from __future__ import annotations

import numpy as np
from structural_helpers import NONE, Case, const, dyn

R = np.random.default_rng(1234)
I64 = np.int64
BIG = np.iinfo(np.int64).max


def w(*shape: int) -> np.ndarray:
    """Random float32 weights."""
    return R.standard_normal(shape).astype(np.float32)


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=I64)


def _affine() -> list[Case]:
    bn = [const(R.uniform(0.5, 2, 3)), const(w(3)), const(w(3)), const(R.uniform(0.1, 2, 3))]
    return [
        Case("Linear", [dyn(1, 5), const(w(5, 3)), const(w(3))], name="linear"),
        Case("Linear", [dyn(2, 4, 5), const(w(5, 3))], name="linear-nobias-3d"),
        Case(
            "Linear",
            [dyn(1, 5), const(w(5, 3)), const(w(3))],
            {"fp_stages": 3, "fp_slack": np.ones(3)},
            name="linear-stages",
        ),
        Case("Gemm", [dyn(2, 4), const(w(4, 3)), const(w(3))], name="gemm"),
        Case(
            "Gemm",
            [dyn(4, 2), const(w(3, 4)), const(w(2, 3))],
            {"transA": 1, "transB": 1, "alpha": 0.5, "beta": -2.0},
            name="gemm-trans",
        ),
        Case("Gemm", [dyn(2, 4), const(w(4, 3))], opset=13, name="gemm-noc"),
        Case("Gemm", [dyn(1, 4), const(w(4, 3)), const(w(1, 3))], opset=9, name="gemm-9"),
        Case(
            "Gemm", [const(w(2, 4)), dyn(4, 3), dyn(1, 3)], {"beta": -0.5}, name="gemm-constA-dynC"
        ),
        Case(
            "Gemm",
            [dyn(2, 4), dyn(3, 4), const(w(3))],
            {"transB": 1, "alpha": -1.5},
            name="gemm-both",
        ),
        Case("MatMul", [dyn(3, 4), const(w(4, 2))], name="matmul"),
        Case("MatMul", [dyn(4), const(w(4, 2))], name="matmul-1d-left"),
        Case("MatMul", [dyn(2, 3, 4), const(w(4))], name="matmul-1d-right"),
        Case("MatMul", [const(w(2, 3)), dyn(5, 3, 4)], name="matmul-constA"),
        Case("MatMul", [dyn(3, 4), dyn(4, 2)], name="matmul-both"),
        Case("MatMul", [dyn(2, 1, 3, 4), dyn(5, 4, 2)], name="matmul-both-bcast"),
        Case("MatMul", [dyn(4), dyn(4)], name="matmul-both-1d"),
        Case("BatchNormalization", [dyn(1, 3, 4, 4), *bn], {"epsilon": 1e-3}, name="bn"),
        Case("BatchNormalization", [dyn(2, 3), *bn], opset=9, name="bn-2d-9"),
        Case("BatchNormalization", [dyn(1, 3, 5), *bn], opset=7, name="bn-7"),
        Case("BatchNormalization", [dyn(1, 3, 2, 2, 2), *bn], opset=15, name="bn-15"),
        Case("Einsum", [dyn(2, 3), const(w(3, 4))], {"equation": "ij,jk->ik"}, name="einsum"),
        Case(
            "Einsum", [dyn(2, 3, 4), dyn(2, 4, 5)], {"equation": "bij,bjk->bik"}, name="einsum-both"
        ),
        Case("Einsum", [dyn(3, 3)], {"equation": "ii->i"}, name="einsum-diag"),
        Case("Einsum", [dyn(2, 3), const(w(3, 4))], {"equation": "ij,jk"}, name="einsum-implicit"),
        Case(
            "Einsum",
            [dyn(2, 3, 4), const(w(4, 5))],
            {"equation": "...ij,jk->...ik"},
            name="einsum-ellipsis",
        ),
        Case(
            "Einsum",
            [const(w(2, 3)), dyn(3, 4), const(w(4))],
            {"equation": "ij,jk,k->i"},
            name="einsum-three",
        ),
    ]


def _conv() -> list[Case]:
    x = dyn(1, 4, 7, 6)
    return [
        Case("Conv", [x, const(w(5, 4, 3, 3)), const(w(5))], {"pads": [1, 1, 1, 1]}, name="conv"),
        Case(
            "Conv",
            [x, const(w(6, 2, 3, 2)), const(w(6))],
            {"strides": [2, 3], "dilations": [2, 1], "group": 2, "pads": [0, 1, 2, 0]},
            name="conv-group-asym",
        ),
        Case(
            "Conv",
            [x, const(w(4, 1, 3, 3))],
            {"group": 4, "auto_pad": "SAME_UPPER", "strides": [2, 2]},
            name="conv-depthwise-same-upper",
        ),
        Case(
            "Conv",
            [x, const(w(3, 4, 2, 3))],
            {"auto_pad": "SAME_LOWER", "strides": [2, 1], "kernel_shape": [2, 3]},
            name="conv-same-lower",
        ),
        Case(
            "Conv",
            [x, const(w(3, 4, 1, 1))],
            {"auto_pad": "SAME_UPPER", "strides": [3, 4]},
            name="conv-same-stride-gt-kernel",
        ),
        Case(
            "Conv",
            [x, const(w(3, 4, 3, 3))],
            {"auto_pad": "VALID", "strides": [2, 2]},
            opset=11,
            name="conv-valid",
        ),
        Case(
            "Conv",
            [dyn(2, 3, 9), const(w(4, 3, 3)), const(w(4))],
            {"strides": [2], "pads": [2, 1], "dilations": [3]},
            name="conv1d",
        ),
        Case(
            "Conv",
            [dyn(1, 2, 4, 5, 3), const(w(3, 2, 2, 3, 2)), const(w(3))],
            {"pads": [1, 0, 1, 0, 1, 0]},
            name="conv3d",
        ),
        Case(
            "ConvTranspose",
            [x, const(w(4, 3, 3, 3)), const(w(3))],
            {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0]},
            name="convT",
        ),
        Case(
            "ConvTranspose",
            [x, const(w(4, 2, 2, 3))],
            {"group": 2, "dilations": [2, 1], "strides": [1, 2]},
            name="convT-group",
        ),
        Case(
            "ConvTranspose",
            [x, const(w(4, 3, 3, 3)), const(w(3))],
            {"strides": [2, 3], "output_shape": [14, 17]},
            name="convT-output-shape",
        ),
        Case(
            "ConvTranspose",
            [x, const(w(4, 3, 3, 2))],
            {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
            name="convT-same-upper",
        ),
        Case(
            "ConvTranspose",
            [x, const(w(4, 3, 3, 2))],
            {"strides": [3, 2], "auto_pad": "SAME_LOWER"},
            name="convT-same-lower",
        ),
        Case(
            "ConvTranspose",
            [dyn(1, 2, 5), const(w(2, 3, 4)), const(w(3))],
            {"strides": [3], "pads": [2, 1]},
            name="convT1d",
        ),
        Case(
            "ConvTranspose",
            [dyn(1, 2, 2, 3, 2), const(w(2, 2, 2, 2, 3))],
            {"strides": [2, 1, 2]},
            name="convT3d",
        ),
    ]


def _pool() -> list[Case]:
    x = dyn(1, 3, 7, 8)
    pool = {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 0, 1, 1]}
    return [
        Case("MaxPool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="maxpool"),
        Case("MaxPool", [x], {**pool, "ceil_mode": 1}, name="maxpool-ceil"),
        Case(
            "MaxPool",
            [x],
            {"kernel_shape": [3, 3], "dilations": [2, 1], "ceil_mode": 1, "strides": [2, 2]},
            name="maxpool-dilated",
        ),
        Case(
            "MaxPool",
            [x],
            {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
            name="maxpool-same",
        ),
        Case(
            "MaxPool",
            [dyn(2, 3, 9)],
            {"kernel_shape": [4], "strides": [3], "pads": [2, 2]},
            opset=8,
            name="maxpool1d-8",
        ),
        Case(
            "MaxPool",
            [dyn(1, 2, 4, 5, 3)],
            {"kernel_shape": [2, 2, 2], "strides": [1, 2, 1]},
            opset=10,
            name="maxpool3d",
        ),
        Case("AveragePool", [x], {**pool, "ceil_mode": 1}, name="avgpool-ceil"),
        Case(
            "AveragePool",
            [x],
            {**pool, "ceil_mode": 1, "count_include_pad": 1},
            name="avgpool-ceil-incl",
        ),
        Case("AveragePool", [x], {**pool, "count_include_pad": 1}, opset=7, name="avgpool-incl-7"),
        Case(
            "AveragePool",
            [x],
            {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 2]},
            opset=11,
            name="avgpool-same-lower",
        ),
        Case(
            "AveragePool",
            [x],
            {"kernel_shape": [2, 3], "dilations": [2, 2], "ceil_mode": 1, "pads": [1, 1, 0, 1]},
            opset=19,
            name="avgpool-dilated-19",
        ),
        Case(
            "AveragePool",
            [dyn(2, 3, 9)],
            {"kernel_shape": [4], "strides": [3]},
            opset=10,
            name="avgpool1d",
        ),
        Case("GlobalAveragePool", [x], name="gap"),
        Case("GlobalMaxPool", [dyn(1, 3, 3, 4, 2)], name="gmp"),
        Case(
            "LpPool",
            [x],
            {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [1, 1, 0, 1], "p": 2},
            opset=11,
            name="lppool",
        ),
        Case(
            "LpPool",
            [x],
            {"kernel_shape": [2, 2], "p": 1, "ceil_mode": 1, "strides": [2, 3]},
            opset=18,
            name="lppool-p1",
        ),
        Case("LpPool", [dyn(1, 2, 6)], {"kernel_shape": [3], "p": 3}, opset=18, name="lppool-p3"),
        Case("GlobalLpPool", [x], {"p": 2}, name="glppool"),
    ]


def _resize() -> list[Case]:
    x = dyn(1, 2, 3, 5)
    empty = const(np.zeros(0, np.float32))
    sc = const(np.array([1, 1, 2.5, 0.6], np.float32))
    cases = [
        Case(
            "Resize",
            [x, NONE, sc],
            {"coordinate_transformation_mode": ctm, "nearest_mode": nm},
            opset=13,
            name=f"resize-{ctm}-{nm}",
        )
        for ctm, nm in [
            ("asymmetric", "floor"),
            ("half_pixel", "round_prefer_floor"),
            ("half_pixel", "round_prefer_ceil"),
            ("align_corners", "round_prefer_floor"),
            ("pytorch_half_pixel", "ceil"),
            ("tf_half_pixel_for_nn", "floor"),
        ]
    ]
    cases += [
        Case(
            "Resize",
            [x, empty, sc],
            {"mode": "linear", "coordinate_transformation_mode": ctm},
            opset=13,
            name=f"resize-linear-{ctm}",
        )
        for ctm in ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"]
    ]
    return [
        *cases,
        Case(
            "Resize",
            [x, empty, empty, const(ints(1, 2, 7, 3))],
            {"mode": "linear"},
            opset=11,
            name="resize-sizes-11",
        ),
        Case(
            "Resize",
            [x, NONE, NONE, const(ints(2, 9))],
            {"axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"},
            opset=18,
            name="resize-axes-policy",
        ),
        Case(
            "Resize",
            [x, NONE, const(np.array([1.7, 3.0], np.float32))],
            {
                "axes": [-2, -1],
                "mode": "linear",
                "coordinate_transformation_mode": "half_pixel_symmetric",
            },
            opset=19,
            name="resize-symmetric",
        ),
        Case("Resize", [x, const(np.array([1, 1, 2, 3], np.float32))], opset=10, name="resize-10"),
        Case(
            "Resize",
            [x, const(np.array([1, 1, 2, 1.5], np.float32))],
            {"mode": "linear"},
            opset=10,
            name="resize-10-linear",
        ),
        Case("Upsample", [x], {"scales": [1.0, 1.0, 2.0, 3.0]}, opset=7, name="upsample-7"),
        Case(
            "Upsample",
            [x, const(np.array([1, 1, 2, 2.5], np.float32))],
            {"mode": "linear"},
            opset=9,
            name="upsample-9-linear",
        ),
    ]


def _shape() -> list[Case]:
    x = dyn(1, 2, 3, 4)
    return [
        Case("Identity", [x], name="identity"),
        Case("Dropout", [x], {"ratio": 0.3}, opset=7, name="dropout-7"),
        Case("Dropout", [x, const(np.float32(0.2))], opset=12, outputs=2, name="dropout-12-mask"),
        Case("Flatten", [x], name="flatten"),
        Case("Flatten", [x], {"axis": 0}, opset=9, name="flatten-0"),
        Case("Flatten", [x], {"axis": -1}, opset=13, name="flatten-neg"),
        Case("Reshape", [x, const(ints(0, -1, 2))], opset=5, name="reshape-5"),
        Case("Reshape", [x, const(ints(2, 0, 3, 1, 2))], opset=14, name="reshape-14"),
        Case("Transpose", [x], name="transpose-default"),
        Case("Transpose", [x], {"perm": [0, 3, 1, 2]}, name="transpose"),
        Case("Squeeze", [dyn(1, 3, 1, 2)], {"axes": [0, -2]}, opset=11, name="squeeze-11"),
        Case("Squeeze", [dyn(1, 3, 1, 2), const(ints(2))], opset=13, name="squeeze-13"),
        Case("Squeeze", [dyn(1, 3, 1, 2)], opset=13, name="squeeze-all"),
        Case("Unsqueeze", [dyn(3, 2)], {"axes": [0, 3]}, opset=11, name="unsqueeze-11"),
        Case("Unsqueeze", [dyn(3, 2), const(ints(-1, 1))], opset=13, name="unsqueeze-13"),
        Case("Concat", [x, const(w(1, 2, 3, 2)), dyn(1, 2, 3, 1)], {"axis": -1}, name="concat"),
        Case("Concat", [dyn(2, 3), dyn(1, 3)], {"axis": 0}, opset=11, name="concat-11"),
        Case(
            "Split", [dyn(2, 7)], {"axis": 1, "split": [3, 4]}, opset=11, outputs=2, name="split-11"
        ),
        Case("Split", [dyn(6, 2)], opset=11, outputs=3, name="split-equal"),
        Case(
            "Split",
            [dyn(2, 7), const(ints(2, 5))],
            {"axis": -1},
            opset=13,
            outputs=2,
            name="split-13",
        ),
        Case(
            "Split",
            [dyn(2, 7)],
            {"axis": 1, "num_outputs": 3},
            opset=18,
            outputs=3,
            name="split-18-uneven",
        ),
        Case(
            "Slice",
            [x],
            {"starts": [1, -3], "ends": [BIG, 100], "axes": [2, -1]},
            opset=9,
            name="slice-9",
        ),
        Case(
            "Slice",
            [x, const(ints(-1, 3)), const(ints(-BIG, 0)), const(ints(3, 2)), const(ints(-2, -1))],
            opset=13,
            name="slice-neg-steps",
        ),
        Case(
            "Slice",
            [x, const(ints(0, 1)), const(ints(3, 4)), NONE, const(ints(2, 2))],
            opset=13,
            name="slice-steps",
        ),
        Case(
            "Slice",
            [x, const(ints(2)), const(ints(1)), const(ints(1))],
            opset=13,
            name="slice-empty",
        ),
        Case("Gather", [x, const(np.array(-1, I64))], {"axis": 3}, name="gather-scalar"),
        Case("Gather", [x, const(np.array([[0, -1], [1, 1]], I64))], {"axis": 2}, name="gather-2d"),
        Case(
            "GatherElements",
            [dyn(3, 4), const(np.array([[0, 3], [-1, 2], [1, 1]], I64))],
            {"axis": 1},
            name="gather-elements",
        ),
        Case("Pad", [x], {"pads": [0, 1, 0, 2, 0, 0, 1, 1], "value": 1.5}, opset=2, name="pad-2"),
        Case(
            "Pad",
            [x, const(ints(0, 0, 2, 1, 0, 0, 1, 3))],
            {"mode": "reflect"},
            opset=11,
            name="pad-reflect",
        ),
        Case(
            "Pad",
            [x, const(ints(0, 0, 2, 1, 0, 0, 1, 3))],
            {"mode": "edge"},
            opset=13,
            name="pad-edge",
        ),
        Case(
            "Pad",
            [x, const(ints(1, -1, 2, 2)), const(np.float32(-3)), const(ints(1, 3))],
            opset=18,
            name="pad-axes",
        ),
        Case(
            "Pad",
            [x, const(ints(0, 0, 2, 5, 0, 0, 1, 3))],
            {"mode": "wrap"},
            opset=19,
            name="pad-wrap",
        ),
        Case("Cast", [x], {"to": 1}, name="cast-float"),
        Case("Cast", [x], {"to": 11}, opset=13, name="cast-double"),
        Case("CastLike", [x, const(np.zeros(2, np.float32))], opset=15, name="castlike-float"),
        Case("Expand", [dyn(3, 1), const(ints(2, 1, 4))], name="expand"),
        Case("Tile", [dyn(2, 3), const(ints(2, 3))], name="tile"),
        Case("DepthToSpace", [dyn(1, 8, 2, 3)], {"blocksize": 2}, name="d2s-dcr"),
        Case("DepthToSpace", [dyn(1, 8, 2, 3)], {"blocksize": 2, "mode": "CRD"}, name="d2s-crd"),
        Case("SpaceToDepth", [dyn(1, 2, 4, 6)], {"blocksize": 2}, name="s2d"),
        Case("Shape", [x], {"start": 1, "end": -1}, opset=15, name="shape-15"),
        Case("Size", [x], name="size"),
    ]


def _scatter() -> list[Case]:
    nd, two = ints(1, -1, 0), np.array([[0, 1], [2, -1]], np.int64)
    distinct = np.array([[0, 2, 1, 3], [-1, 0, 2, 1], [1, 3, 0, 2]], np.int64)
    repeated = np.array([[0, 2, 1, 3], [3, 0, 3, 3], [1, 1, 0, 2]], np.int64)
    return [
        Case("ScatterND", [dyn(4, 3), const(nd.reshape(3, 1)), dyn(3, 3)], name="scatternd-rows"),
        Case("ScatterND", [dyn(3, 4), const(two), const(w(2))], name="scatternd-const-updates"),
        Case("ScatterND", [const(w(3, 4)), const(two), dyn(2)], name="scatternd-const-data"),
        *(Case("ScatterND", [dyn(4, 3), const(ints(1, 1, -1).reshape(3, 1)), dyn(3, 3)],
               {"reduction": r}, opset=18, name=f"scatternd-{r}") for r in ("add", "max", "min")),
        Case("ScatterElements", [dyn(3, 4), const(distinct), dyn(3, 4)], {"axis": 1}, name="scatter-elements"),
        Case("ScatterElements", [dyn(4, 4), const(repeated), dyn(3, 4)], {"axis": 0, "reduction": "add"},
             opset=18, name="scatter-elements-add"),
        Case("Scatter", [dyn(3, 4), const(repeated[:, 1:3]), dyn(3, 2)], {"axis": 1}, opset=10, name="scatter-9"),
    ]


def _normalization() -> list[Case]:
    return [
        Case("LayerNormalization", [dyn(2, 6), const(w(6)), const(w(6))], name="layernorm"),
        Case("LayerNormalization", [dyn(1, 3, 4), const(w(3, 4))], {"axis": 1, "epsilon": 1e-3},
             name="layernorm-axis1-nobias"),
        Case("LayerNormalization", [dyn(2, 3, 5), const(w(5)), const(w(5))], {"axis": -1}, name="layernorm-last"),
    ]


CASES = _affine() + _conv() + _pool() + _resize() + _shape() + _scatter() + _normalization()

# Casts to float16 round: checked only against the float error bound, not for equality.
FP_ONLY = [Case("Cast", [dyn(2, 3)], {"to": 10}, name="cast-float16")]
