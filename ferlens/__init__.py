"""ferlens: facial-expression recognition, from FER2013 / FER+ training to a 7-emotion web app.

Three floors, one subpackage each (docs/architecture.md draws them):

- `ferlens.core`: the serving core. `ferlens.core.recognition.EmotionRecognizer(...).predict(image)`
  returns a list of `Face`s; detectors, images, videos, results. Needs no TensorFlow.
- `ferlens.modelfolder`: the model-folder contract: what a folder holds, its checksums, its known
  answers, and loading its files into an inference engine.
- `ferlens.training`: data, architectures, training, ensembles, evaluation, export (TensorFlow).

`ferlens.config` holds the constants every floor shares. This file imports nothing, so importing any
part of the library loads only that part.
"""

__version__ = "0.1.0"
