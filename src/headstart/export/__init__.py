"""Export a trained run to ONNX or TorchScript, with its description inside, and prove parity.

This package's ``__init__`` and ``metadata``/``onnx_check`` import no torch: the torch-free
runtime reads exported files with them. ``exporters`` and ``parity`` need torch.
"""

FORMATS = ("onnx", "torchscript")
