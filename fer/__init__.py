"""Facial-expression recognition: FER2013 training, face detection and a 7-emotion CNN.

Public API: `EmotionRecognizer(...).predict(image)` returns a list of `Face`s.
"""

from fer.backends import ModelLoadError
from fer.config import CLASS_NAMES
from fer.images import InvalidImageError
from fer.recognition import EmotionRecognizer, Face

__all__ = ["CLASS_NAMES", "EmotionRecognizer", "Face", "InvalidImageError", "ModelLoadError"]
__version__ = "0.1.0"
