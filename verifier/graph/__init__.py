"""Graph layer: ONNX loading and validation (:mod:`.loader`, :mod:`.validate`,
:mod:`.onnx_file`), simplification (:mod:`.simplify`) and concrete evaluation in torch
(:mod:`.torch_graph`). The IR types themselves live one layer down, in :mod:`verifier.ir`.

Nothing is imported here: :mod:`.onnx_file` and :mod:`.validate` must stay importable without
torch, so that bad input is reported before the slow imports.
"""
