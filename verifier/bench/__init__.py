"""``verify bench``: VNN-COMP style benchmark runs of any verifier, with checking, scoring,
resume, plots, and local or Ray execution."""
