"""Training: FER2013 and FER+ data, augmentation, architectures, training runs, ensembles, evaluation
and export (TensorFlow / Keras)."""
