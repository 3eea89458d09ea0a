"""Branch and bound: input splitting (and, next, ReLU splitting)."""

from verifier.bab.input_split import BabOutcome, BabStats, InputSplitSearch, input_split_search

__all__ = ["BabOutcome", "BabStats", "InputSplitSearch", "input_split_search"]
