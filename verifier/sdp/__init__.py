"""Low-rank SDP bounds (Burer–Monteiro) with a certified dual bound; see :mod:`verifier.sdp.bound`."""

from verifier.sdp.bound import sdp_clause_rows
from verifier.sdp.problem import SdpUnsupported

__all__ = ["SdpUnsupported", "sdp_clause_rows"]
