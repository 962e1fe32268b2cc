"""Deployment formats of an exported classifier: ONNX for ONNX Runtime."""
