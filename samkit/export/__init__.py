"""Exports: ONNX graphs of the image encoder and of the prompt encoder + mask decoder."""
