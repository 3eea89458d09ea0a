"""Bound propagation methods (traversals over the graph; op math lives in verifier.ops)."""
