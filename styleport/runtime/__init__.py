"""Running exported artefacts and judging them against PyTorch. One folder per job:

    runners/   one small runner interface (base.py), the registry of backends (registry.py) and one
               file per backend: ort.py (ONNX Runtime), litert.py (+ litert_profile.py), executorch.py,
               coreml_macos.py (Core ML's own predict, macOS only), pytorch.py (the reference)
    coreml/    coreml-mil: a numpy interpreter of CoreML files for Linux CI (ML programs: ops.py,
               program.py, runner.py; neuralNetwork .mlmodel files: nn_layers.py, nn.py; image.py)
    numerics/  fp16 device arithmetic emulated per format (``--emulate``) and the fp16 headroom table
    harness/   what parity and bench do with runners: tensor adaptation (adapt), what to run (targets),
               the torch reference, checks and tolerances, parity, bench (fresh worker per artefact),
               layer-wise drift, timing loop, machine facts, and the CLI verbs (commands)

Importing this package imports nothing else: every runner is loaded by name from runners/registry.py
when a model of its format is run, so a missing runtime package only matters then.
"""
