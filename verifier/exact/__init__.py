"""Exact engines for one input region: MILP (pulp with HiGHS or CBC) and SMT (z3).

Both encode the network with :func:`verifier.exact.encoding.encode` as a piecewise-linear
program that over-approximates the float32 model (float-error terms from CROWN), so their
``unsat`` is a proof for the float model; a ``sat`` answer carries a candidate input that the
caller must re-check with onnxruntime before reporting it. :func:`milp_row_minimum` minimises one
spec row (exactly or over the LP relaxation) for comparison tables; its figures are not certified.
"""

from verifier.exact.check import exact_check
from verifier.exact.encoding import ExactOutcome, ExactUnsupported, encode
from verifier.exact.milp import MilpConfig, milp_check
from verifier.exact.milp_rows import RowMinimum, milp_row_minimum
from verifier.exact.smt import SmtConfig, smt_check

__all__ = ["ExactOutcome", "ExactUnsupported", "MilpConfig", "RowMinimum", "SmtConfig", "encode", "exact_check",
           "milp_check", "milp_row_minimum", "smt_check"]
