"""Inference engines, one module per runtime behind `base.Backend`: Keras, LiteRT (TFLite), ONNX Runtime."""
