"""styleport: neural style transfer networks, from PyTorch to the edge (ONNX, TFLite, CoreML)."""

__version__ = "0.1.0"
