"""Exact engines for one input region: MILP (pulp with HiGHS or CBC) and SMT (z3).

Both encode the network with :func:`verifier.exact.encoding.encode` as a piecewise-linear
program that over-approximates the float32 model (float-error terms from CROWN), so their
``unsat`` is a proof for the float model; a ``sat`` answer carries a candidate input that the
caller must re-check with onnxruntime before reporting it.
"""

from verifier.exact.encoding import ExactOutcome, ExactUnsupported, encode
from verifier.exact.milp import MilpConfig, milp_check
from verifier.exact.smt import SmtConfig, smt_check

__all__ = ["ExactOutcome", "ExactUnsupported", "MilpConfig", "SmtConfig", "encode", "milp_check", "smt_check"]
