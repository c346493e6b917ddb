"""The serving core: one pipeline (`recognition.EmotionRecognizer`) with its detectors, images, videos and
results, and the command-line front ends built on it. Imports no TensorFlow."""
