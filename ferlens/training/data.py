"""Load FER2013 (Kaggle folder layout or the original csv) and any folder-per-class dataset.

Everything comes back as uint8 arrays of shape (N, 48, 48) plus integer labels in the
order of `ferlens.config.CLASS_NAMES`, split into train / validation / test. Bad images are
skipped and reported, never fatal, because public copies of FER2013 do contain junk.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferlens.config import (
    CACHE_DIR,
    CLASS_NAMES,
    CSV_EMOTION_ORDER,
    FACE_MARGIN,
    IMAGE_SIZE,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SPLIT_VAL,
)
from ferlens.core.images import TRAINING_IMAGE_SUFFIXES

#: 2: splits of FER2013's own layout carry their file names (to join FER+ votes, ferlens.training.ferplus).
_CACHE_VERSION = "2"


class DatasetError(ValueError):
    """The dataset path or file cannot be used at all (as opposed to a single bad image)."""


@dataclass
class Split:
    """One part of a dataset: images (N, 48, 48) uint8 and labels (N,) int64.

    FER2013's own layout also gives each image's path inside the dataset folder (`files`, e.g.
    "train/angry/Training_10118481.jpg"), the key that FER+ votes are joined on; `votes` (N, 10)
    holds those votes once `ferlens.training.ferplus.attach_votes` has joined them (a row of zeros: no votes).
    """

    images: np.ndarray
    labels: np.ndarray
    files: np.ndarray | None = None
    votes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}


@dataclass
class Dataset:
    """Train / validation / test splits plus what was skipped while loading and why."""

    train: Split
    val: Split
    test: Split
    source: str
    layout: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Class-folder photos in which no face was found, so the whole image was used (see `crop_faces`).
    uncropped: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts per split and class: the paper analyses class imbalance, so we always report it."""
        return {
            "source": self.source,
            "layout": self.layout,
            "splits": {
                name: {"total": len(split), "per_class": split.class_counts()}
                for name, split in (("train", self.train), ("val", self.val), ("test", self.test))
            },
            "skipped": len(self.skipped),
            "skipped_examples": [f"{path}: {why}" for path, why in self.skipped[:10]],
        }

    def describe(self) -> str:
        """Human-readable class distribution table."""
        lines = [f"dataset {self.source} ({self.layout})"]
        header = f"{'class':<10}" + "".join(f"{s:>8}" for s in ("train", "val", "test"))
        lines.append(header)
        counts = [s.class_counts() for s in (self.train, self.val, self.test)]
        for name in CLASS_NAMES:
            lines.append(f"{name:<10}" + "".join(f"{c[name]:>8}" for c in counts))
        lines.append(f"{'total':<10}" + "".join(f"{len(s):>8}" for s in (self.train, self.val, self.test)))
        if self.uncropped:
            lines.append(f"no face found in {len(self.uncropped)} image(s), used whole, e.g. {self.uncropped[0]}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable or wrongly sized images, e.g.:")
            lines.extend(f"  {path}: {why}" for path, why in self.skipped[:5])
        return "\n".join(lines)


def load_dataset(
    path: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    use_cache: bool = True,
    crop_faces: bool = True,
) -> Dataset:
    """Load a dataset from `path`, whichever of the supported forms it is in.

    - a `fer2013.csv` file (`emotion,pixels,Usage`);
    - the Kaggle layout `train|test/<class>/*.jpg`, with the official split recovered from
      the `Training_` / `PublicTest_` / `PrivateTest_` file-name prefixes;
    - any folder-per-class dataset (`<class>/*` or `train|test/<class>/*`); there a seeded,
      stratified validation split (and a test split if there is no `test/`) is carved out.
      With `crop_faces`, an image that is not already a 48x48 face is cropped to the largest face
      the app's photo detector finds in it, framed as the app frames faces (the whole image when
      none is found), so a folder of ordinary photos trains on what the app will classify.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path} is a file but not a .csv; give the fer2013.csv or a folder")
        return _load_csv(path)
    files = _list_images(path)
    if not files:
        raise DatasetError(
            f"no images under {path}: expected class folders named {', '.join(CLASS_NAMES)}"
        )
    key = _cache_key(path, files, val_fraction, seed, crop_faces)
    cache_file = CACHE_DIR / f"{key}.npz"
    if use_cache and cache_file.exists():
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    dataset = _load_folder(path, files, val_fraction=val_fraction, seed=seed, crop_faces=crop_faces)
    if use_cache:
        _write_cache(cache_file, dataset)
    return dataset


def _list_images(root: Path) -> list[tuple[Path, str]]:
    """All image files under `root` whose parent folder is a known class name."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        label = Path(dirpath).name.lower()
        if label not in CLASS_NAMES:
            continue
        for name in filenames:
            if Path(name).suffix.lower() in TRAINING_IMAGE_SUFFIXES:
                found.append((Path(dirpath) / name, label))
    found.sort()
    return found


def _has_official_split(files: list[tuple[Path, str]]) -> bool:
    """FER2013's own split: every file named Training_/PublicTest_/PrivateTest_ and all three present.
    A folder of such files without the test splits (a user's picks from FER2013) is split like any other."""
    splits = {_official_split(path.name) for path, _ in files}
    return splits == {SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST}


def _official_split(filename: str) -> str | None:
    for prefix in (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST):
        if filename.startswith(prefix + "_"):
            return prefix
    return None


def _decode(path: Path, resize: bool) -> tuple[np.ndarray | None, str]:
    """Decode one image to 48x48 grayscale; returns (None, reason) for anything unusable."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if data.size == 0:
        return None, "empty file"
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        return None, "truncated JPEG (no end marker)"
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if image is None:
        return None, "not a decodable image"
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            return None, f"wrong size {image.shape[1]}x{image.shape[0]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return image, ""


@functools.cache
def _photo_detector():
    from ferlens.core.detectors import PHOTO_DETECTOR, make_detector_or_fallback

    return make_detector_or_fallback(PHOTO_DETECTOR)[0]


def _decode_face(path: Path, uncropped: list[str]) -> tuple[np.ndarray | None, str]:
    """Decode one image; if it is not already 48x48, crop it to its largest face as the app would
    (the same detector and framing; the whole image, resized, when no face is found; its path is
    added to `uncropped`)."""
    from ferlens.core.framing import crop_face

    image, why = _decode(path, resize=False)
    if image is not None or not why.startswith("wrong size"):
        return image, why
    bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    detector = _photo_detector()
    faces = detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if detector.uses_color else image)
    if faces:
        return crop_face(image, faces[0].box, IMAGE_SIZE, FACE_MARGIN), ""
    uncropped.append(str(path))
    return cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA), ""


def _load_folder(
    root: Path, files: list[tuple[Path, str]], *, val_fraction: float, seed: int, crop_faces: bool = True,
) -> Dataset:
    official = _has_official_split(files)
    uncropped: list[str] = []
    if official:  # FER2013 is strict about 48x48
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            decoded = list(pool.map(lambda item: _decode(item[0], resize=False), files))
    elif crop_faces:  # one image at a time: the detectors are not shared between threads
        decoded = [_decode_face(path, uncropped) for path, _ in files]
    else:  # other datasets are resized to the model's input
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            decoded = list(pool.map(lambda item: _decode(item[0], resize=True), files))

    images, labels, groups, skipped, names = [], [], [], [], []
    for (path, label), (image, why) in zip(files, decoded):
        if image is None:
            skipped.append((str(path), why))
            continue
        images.append(image)
        names.append(path.relative_to(root).as_posix())
        labels.append(CLASS_NAMES.index(label))
        if official:
            groups.append(_official_split(path.name))
        else:
            groups.append("test" if "test" in {part.lower() for part in path.relative_to(root).parts[:-2]} else "train")
    if not images:
        raise DatasetError(f"none of the {len(files)} images under {root} could be decoded")
    images_arr = np.stack(images)
    labels_arr = np.asarray(labels, dtype=np.int64)
    groups_arr = np.asarray(groups)
    names_arr = np.asarray(names)

    if official:
        parts = {g: np.flatnonzero(groups_arr == g) for g in (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST)}

        def part(group: str) -> Split:
            return Split(images_arr[parts[group]], labels_arr[parts[group]], names_arr[parts[group]])

        return Dataset(
            train=part(SPLIT_TRAIN),
            val=part(SPLIT_VAL),
            test=part(SPLIT_TEST),
            source=str(root),
            layout="fer2013-folders",
            skipped=skipped,
        )

    train_idx = np.flatnonzero(groups_arr == "train")
    test_idx = np.flatnonzero(groups_arr == "test")
    rng = np.random.default_rng(seed)
    if len(test_idx) == 0:
        train_idx, test_idx = _stratified_split(train_idx, labels_arr, val_fraction, rng)
    train_idx, val_idx = _stratified_split(train_idx, labels_arr, val_fraction, rng)
    return Dataset(
        train=Split(images_arr[train_idx], labels_arr[train_idx]),
        val=Split(images_arr[val_idx], labels_arr[val_idx]),
        test=Split(images_arr[test_idx], labels_arr[test_idx]),
        source=str(root),
        layout="class-folders",
        skipped=skipped,
        uncropped=uncropped,
    )


def _stratified_split(
    indices: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` so each class gives `fraction` of its images (at least one) to the second part."""
    keep, carve = [], []
    for cls in np.unique(labels[indices]):
        members = indices[labels[indices] == cls]
        members = rng.permutation(members)
        n = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        carve.append(members[:n])
        keep.append(members[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(carve))


def _load_csv(path: Path) -> Dataset:
    """Read the original `fer2013.csv`: one row per image, 2304 space-separated pixels."""
    csv_to_ours = [CLASS_NAMES.index(name) for name in CSV_EMOTION_ORDER]
    rows: dict[str, tuple[list, list]] = {s: ([], []) for s in (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST)}
    skipped = []
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot open {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        for line_no, row in enumerate(reader, start=2):
            where = f"{path.name}:{line_no}"
            try:
                emotion = int(row["emotion"])
                pixels = np.array(row["pixels"].split(), dtype=np.int64)
            except (ValueError, AttributeError):
                skipped.append((where, "unparsable emotion or pixels"))
                continue
            if not 0 <= emotion < len(csv_to_ours):
                skipped.append((where, f"emotion {emotion} out of range"))
                continue
            if pixels.size != IMAGE_SIZE * IMAGE_SIZE or pixels.min() < 0 or pixels.max() > 255:
                skipped.append((where, f"{pixels.size} pixels, expected {IMAGE_SIZE * IMAGE_SIZE} in 0..255"))
                continue
            usage = (row["Usage"] or "").strip()
            if usage not in rows:
                skipped.append((where, f"unknown Usage {usage!r}"))
                continue
            rows[usage][0].append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            rows[usage][1].append(csv_to_ours[emotion])

    def as_split(usage: str) -> Split:
        images, labels = rows[usage]
        if not images:
            return Split(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros(0, np.int64))
        return Split(np.stack(images), np.asarray(labels, dtype=np.int64))

    if not any(rows[s][0] for s in rows):
        raise DatasetError(f"no usable rows in {path}")
    return Dataset(
        train=as_split(SPLIT_TRAIN),
        val=as_split(SPLIT_VAL),
        test=as_split(SPLIT_TEST),
        source=str(path),
        layout="fer2013-csv",
        skipped=skipped,
    )


def _cache_key(root: Path, files: list[tuple[Path, str]], val_fraction: float, seed: int, crop_faces: bool = True) -> str:
    # Face cropping only applies to class folders; other keys keep their earlier form (FER2013's cache stays valid).
    official = _has_official_split(files)
    tag = f"|faces|{_photo_detector().name}|margin{FACE_MARGIN}" if crop_faces and not official else ""
    if not official and all(_official_split(p.name) for p, _ in files):
        tag += "|own-split"  # such folders were once read as FER2013's split: keep those caches out
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{root.resolve()}|{val_fraction}|{seed}{tag}".encode())
    for path, _label in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _write_cache(cache_file: Path, dataset: Dataset) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            **{f"{name}_{kind}": getattr(getattr(dataset, name), kind)
               for name in ("train", "val", "test") for kind in ("images", "labels", "files")
               if getattr(getattr(dataset, name), kind) is not None},
            meta=np.array([dataset.source, dataset.layout]),
            skipped=np.array([f"{p}\t{w}" for p, w in dataset.skipped], dtype=str),
            uncropped=np.array(dataset.uncropped, dtype=str),
        )
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only home directory only costs us the speed-up


def _read_cache(cache_file: Path) -> Dataset | None:
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            splits = {name: Split(z[f"{name}_images"], z[f"{name}_labels"],
                                  z[f"{name}_files"] if f"{name}_files" in z else None)
                      for name in ("train", "val", "test")}
            source, layout = (str(x) for x in z["meta"])
            skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
            uncropped = z["uncropped"].tolist() if "uncropped" in z else []
    except (OSError, ValueError, KeyError):
        return None
    return Dataset(**splits, source=source, layout=layout, skipped=skipped, uncropped=uncropped)


def class_weights(labels: np.ndarray, power: float = 0.5, targets: np.ndarray | None = None) -> np.ndarray:
    """Per-class loss weights (inverse frequency ** power, mean 1) to lift rare classes like disgust.

    With soft `targets` (N, 7) the frequency is each class's share of the target mass instead of a count."""
    counts = (np.bincount(labels, minlength=len(CLASS_NAMES)) if targets is None else targets.sum(axis=0)).astype(np.float64)
    counts = np.maximum(counts, 1)
    weights = (counts.sum() / (len(CLASS_NAMES) * counts)) ** power
    return (weights / (weights * counts).sum() * counts.sum()).astype(np.float32)
