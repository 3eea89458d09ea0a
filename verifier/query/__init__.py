"""VNN-LIB 2.0 queries bound to their networks: composition of the declared networks into one
graph (:mod:`.compose`), lowering of the query's assertions to a :class:`~verifier.spec.Spec`
over the composed inputs and outputs (:mod:`.lowering`), and the mapping of a counterexample
back to the query's names (:mod:`.assignment`). Sits at the graph layer: it reads ONNX files."""
