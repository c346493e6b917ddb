"""Project-wide constants: class names, image geometry and default paths live here only."""

from __future__ import annotations

import os
from pathlib import Path

#: The seven FER2013 emotions, in the order of the model's output units.
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASS_NAMES)

#: FER2013 images are 48x48 grayscale; every model takes this size (crops happen inside).
IMAGE_SIZE = 48
#: Border added around a detected face box before it is resized to IMAGE_SIZE, as a fraction of the
#: box side. None at all: Haar / HOG boxes already frame a face about as loosely as FER2013's crops, and on
#: ExpW's web photos every extra border cost accuracy (benchmarks/wild_framing.md).
FACE_MARGIN = 0.0

#: `fer2013.csv` numbers the emotions 0..6 in this order (the challenge's own convention).
CSV_EMOTION_ORDER: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: Official FER2013 split names as written in the csv `Usage` column and in the file-name prefixes.
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = "Training", "PublicTest", "PrivateTest"


def split_names(layout: str | None) -> dict[str, str]:
    """What to call a model's "train" / "val" / "test" parts: FER2013's own splits, or (for a user's
    class folders, layout "class-folders") the parts held out of that folder."""
    if layout and not layout.startswith("fer2013"):
        return {"train": "training", "val": "validation", "test": "held-out test"}
    return {"train": SPLIT_TRAIN, "val": SPLIT_VAL, "test": SPLIT_TEST}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "models"
#: The model that `EmotionRecognizer()` and the app load when nothing else is asked for ($FER_MODEL_DIR overrides).
DEFAULT_MODEL_DIR = Path(os.environ.get("FER_MODEL_DIR") or MODELS_DIR / "fer-vgg-ferplus")
#: The accurate model for still photos (upload page, CLI on images), when one is shipped: an ensemble
#: too slow for every video frame. $FER_PHOTO_MODEL_DIR overrides it, and a user's own $FER_MODEL_DIR
#: serves photos too; without either, and with no such folder, photos use DEFAULT_MODEL_DIR.
SHIPPED_PHOTO_MODEL_DIR = MODELS_DIR / "fer-vgg-ferplus-photo"
PHOTO_MODEL_DIR = Path(
    os.environ.get("FER_PHOTO_MODEL_DIR") or os.environ.get("FER_MODEL_DIR")
    or (SHIPPED_PHOTO_MODEL_DIR if SHIPPED_PHOTO_MODEL_DIR.is_dir() else DEFAULT_MODEL_DIR)
)
MODEL_FILENAME = "model.keras"

#: Where FER2013 is looked for when no path is given: $FER2013_DIR, else ../shared/datasets/fer2013.
DEFAULT_DATA_DIR = Path(
    os.environ.get("FER2013_DIR") or PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013"
)
#: FER+ crowd votes (ten a face) for the FER2013 files: $FERPLUS_DIR or ../shared/datasets/ferplus (ferlens.training.ferplus).
DEFAULT_FERPLUS_DIR = Path(
    os.environ.get("FERPLUS_DIR") or PROJECT_ROOT.parent / "shared" / "datasets" / "ferplus"
)
#: ExpW in-the-wild photos (a validation set for the whole pipeline, never trained on): $EXPW_DIR or ../shared/datasets/expw.
DEFAULT_EXPW_DIR = Path(os.environ.get("EXPW_DIR") or PROJECT_ROOT.parent / "shared" / "datasets" / "expw")
#: Decoded arrays are cached here so that loading the dataset a second time takes well under a second.
CACHE_DIR = Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer"))

#: One colour per emotion (RGB), used for boxes, labels and charts alike. Based on Okabe and Ito's
#: palette for colour-blind readers (bluish green), with Tol's indigo and a crimson, a gold and a pink
#: darkened until each has at least 3:1 contrast on white (WCAG's bar for graphics): any two stay at least
#: 12 CIEDE2000 apart with normal vision and simulated protanopia, deuteranopia and tritanopia alike
#: (tests/test_drawing.py checks both). Tags on the image carry black or white text, whichever reads better.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (200, 40, 40),
    "disgust": (0, 158, 115),
    "fear": (51, 34, 136),
    "happy": (182, 143, 0),
    "neutral": (100, 100, 100),
    "sad": (0, 90, 181),
    "surprise": (230, 90, 170),
}

#: Video files (app page and CLI). Frames are streamed one at a time, so memory does not grow
#: with a video's length; these bound the work and the upload.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v")
VIDEO_MAX_UPLOAD_MB = 200
#: Larger frames (beyond 4K UHD) are refused: decoding them alone would take most of the time.
VIDEO_MAX_PIXELS = 3840 * 2160
#: Frames are analysed (and the annotated copy written) at most this size on their longer side.
VIDEO_ANALYSIS_MAX_SIDE = 1280
#: The app analyses at most this many frames per second of video ...
VIDEO_MAX_FPS = 30.0
#: ... and at most this many frames in all (10 minutes at 30 fps); longer videos are sampled evenly.
VIDEO_FRAME_BUDGET = 18_000
#: The app refuses videos longer than this; the CLI takes any length.
VIDEO_MAX_SECONDS = 3600
