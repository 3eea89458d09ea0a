"""Hidden-counterexample soundness benchmarks: the generator (``verify soundness generate``),
its validation and the checker of other verifiers (``verify soundness check``)."""
