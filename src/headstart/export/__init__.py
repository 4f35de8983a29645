"""Export a trained run to ONNX or TorchScript, with its description inside, and prove parity.

``exporters`` and ``parity`` need torch. The description an export carries and the check
of its external data live in ``headstart.predict`` (``metadata``, ``onnx_check``), where
the torch-free runtime reads exported files with them.
"""

FORMATS = ("onnx", "torchscript")
