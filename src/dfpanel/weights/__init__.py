"""Weights files: safetensors + sidecar, folders, fetch, ONNX export."""
