"""All-constant single-node cases, run as the loader's constant folding runs them (every
input with a batch of 1, int64 shape arithmetic) and compared with onnxruntime.

Ops whose outputs are constants computed at load time from static inputs (ConstantOfShape,
Range) have no dynamic input, so the sampling and float error checks of
``structural_cases.CASES`` do not apply to them: they are checked here only.
"""

from __future__ import annotations

import numpy as np
from structural_cases import BIG, I64, ints, w
from structural_helpers import Case, const

FOLDING = [
    Case("Shape", [const(w(2, 3, 4))], opset=13, name="fold-shape"),
    Case("Gather", [const(ints(5, 6, 7)), const(np.array(1, I64))], name="fold-gather"),
    Case("Concat", [const(ints(1, 2)), const(ints(-1))], {"axis": 0}, name="fold-concat"),
    Case("Unsqueeze", [const(np.array(4, I64)), const(ints(0))], opset=13, name="fold-unsqueeze"),
    Case(
        "Slice",
        [const(ints(1, 2, 3, 4)), const(ints(-3)), const(ints(BIG))],
        opset=13,
        name="fold-slice",
    ),
    Case("Reshape", [const(ints(1, 2, 3, 4)), const(ints(2, -1))], name="fold-reshape"),
    Case("Squeeze", [const(ints(7).reshape(1, 1)), const(ints(0))], opset=13, name="fold-squeeze"),
    Case("Cast", [const(ints(3, -2))], {"to": 1}, name="fold-cast-float"),
    Case("Cast", [const(np.array([-1.7, 2.5, 0.2], np.float32))], {"to": 7}, name="fold-cast-int"),
    Case("Cast", [const(ints(3, 0))], {"to": 9}, name="fold-cast-bool"),
    Case("Cast", [const(ints(2**40 + 3))], {"to": 6}, name="fold-cast-int32"),
    Case(
        "CastLike",
        [const(np.array([-1.7, 2.5, 0.2], np.float32)), const(ints(0))],
        opset=15,
        name="fold-castlike-int",
    ),
    Case(
        "CastLike",
        [const(ints(3, -2)), const(np.zeros(1, np.float32))],
        opset=15,
        name="fold-castlike-float",
    ),
    Case(
        "ConstantOfShape", [const(ints(2, 3))], {"value": np.array([7], I64)}, name="fold-cos-int"
    ),
    Case("ConstantOfShape", [const(ints(2))], name="fold-cos-default"),
    Case(
        "Range",
        [const(np.array(0, I64)), const(np.array(10, I64)), const(np.array(3, I64))],
        name="fold-range",
    ),
    Case(
        "Range",
        [const(np.array(5, I64)), const(np.array(-2, I64)), const(np.array(-2, I64))],
        name="fold-range-neg",
    ),
    Case(
        "Range",
        [const(np.float32(0.5)), const(np.float32(2.0)), const(np.float32(0.25))],
        name="fold-range-float",
    ),
    Case(
        "Range",
        [const(np.float32(0.1)), const(np.float32(30.0)), const(np.float32(0.1))],
        name="fold-range-accumulated",
    ),
    Case("Size", [const(w(2, 5))], name="fold-size"),
    Case("Transpose", [const(np.arange(6, dtype=I64).reshape(2, 3))], name="fold-transpose"),
    Case("Expand", [const(ints(3)), const(ints(2, 2))], name="fold-expand"),
    Case("Tile", [const(ints(1, 2)), const(ints(3))], name="fold-tile"),
    Case("Split", [const(ints(1, 2, 3, 4))], opset=13, outputs=2, name="fold-split"),
    Case("Pad", [const(ints(1, 2)), const(ints(1, 2))], name="fold-pad"),
    Case("Identity", [const(ints(4, 5))], name="fold-identity"),
    Case("Flatten", [const(np.arange(6, dtype=I64).reshape(1, 2, 3))], name="fold-flatten"),
    Case("MatMul", [const(w(2, 3)), const(w(3))], name="fold-matmul"),
]
