"""Branch and bound: input splitting (and, next, ReLU splitting)."""

from verifier.bab.input_split import BabOutcome, BabStats, InputSplitConfig, input_split

__all__ = ["BabOutcome", "BabStats", "InputSplitConfig", "input_split"]
