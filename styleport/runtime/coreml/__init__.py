"""coreml-mil: the numpy interpreter of CoreML models for machines without Core ML (see runner.py and nn.py)."""
