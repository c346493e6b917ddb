"""Facial-expression recognition: FER2013 training, Haar face detection and a 7-emotion CNN.

Public API: `EmotionRecognizer(...).predict(image)` returns a list of `Face`s.
"""

import sys

if "tensorflow" not in sys.modules:
    # aiortc's SRTP bindings (loaded by streamlit-webrtc) segfault when imported after TensorFlow,
    # whose bundled BoringSSL clashes with OpenSSL, and so does importing them here once TF is in.
    try:  # noqa: SIM105
        import pylibsrtp  # noqa: F401
    except ImportError:
        pass

from fer.backends import ModelLoadError  # noqa: E402
from fer.config import CLASS_NAMES  # noqa: E402
from fer.images import InvalidImageError  # noqa: E402
from fer.recognition import EmotionRecognizer, Face  # noqa: E402

__all__ = ["CLASS_NAMES", "EmotionRecognizer", "Face", "InvalidImageError", "ModelLoadError"]
__version__ = "0.1.0"
