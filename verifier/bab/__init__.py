"""Branch and bound: input splitting and ReLU splitting (beta-CROWN)."""

from verifier.bab.common import BabOutcome, BabStats
from verifier.bab.input_split import InputSplitSearch, input_split_search
from verifier.bab.relu_split import ReluSplitSearch, relu_split_search

__all__ = ["BabOutcome", "BabStats", "InputSplitSearch", "ReluSplitSearch", "input_split_search",
           "relu_split_search"]
