"""Find the images and their labels in a folder or CSV.

Layouts (``scan`` picks one):
  folders  DATA/<class>/**/<image>       class = top-level sub-folder, images found at any depth
  splits   DATA/{train,val[,test]}/<class>/**/<image>   splits matched by class NAME
  csv      DATA.csv with columns ``path,label`` or ``path,labels`` (";"-separated, multi-label);
           relative paths are relative to the CSV's folder

Class order: class names sorted by Python string order (Unicode code points), the rule
torchvision's ImageFolder and Keras use; index i of every output is ``classes[i]``.
Indexing only lists files: it never opens or changes them (decoding happens once, in the
store, where unreadable files are skipped and listed).
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from headstart.data.sources import detect
from headstart.data.sources.found import Found
from headstart.errors import DataError
from headstart.files import is_regular, open_regular
from headstart.preprocess import IMAGE_EXTENSIONS

LAYOUT_HELP = (
    "Expected DATA/<class>/<images>, DATA/train|val[|test]/<class>/<images>, "
    "a CSV with columns path,label (or path,labels for multi-label), "
    "or parquet / WebDataset .tar shards."
)
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True, slots=True)  # slots: ~60 fewer bytes each, a million of them
class Sample:
    path: str  # absolute path of the image file
    labels: tuple[int, ...]  # indices into DataIndex.classes; exactly one unless multi-label


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass
class DataIndex:
    """The labelled files of one data source, before decoding."""

    root: Path
    layout: str  # "folders" | "splits" | "csv"
    classes: list[str]
    multilabel: bool
    samples: dict[str, list[Sample]]  # split name -> samples; "all" when no splits are given
    ignored: int = 0  # files that are not images (by extension)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the user should know (missing classes...)

    @property
    def all_samples(self) -> list[Sample]:
        return [s for split in self.samples.values() for s in split]

    def class_counts(self, split: str | None = None) -> Counter[str]:
        samples = self.samples[split] if split else self.all_samples
        return Counter(self.classes[i] for s in samples for i in s.labels)

    def remap(self, classes: list[str]) -> DataIndex:
        """Express the labels in another class list (a trained model's), matched by name."""
        unknown = sorted(set(self.classes) - set(classes))
        if unknown:
            raise DataError(
                f"{self.root}: classes {unknown} are not among the model's classes {classes}; "
                "evaluate on data with the model's class names."
            )
        position = {name: classes.index(name) for name in self.classes}
        samples = {
            split: [Sample(s.path, tuple(position[self.classes[i]] for i in s.labels)) for s in items]
            for split, items in self.samples.items()
        }
        return replace(self, classes=list(classes), samples=samples)


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# Why a file found by the walk is not read (a Skipped reason); "" when it is read.
NOT_REGULAR = "not a regular file (a FIFO, device or socket): never read"
OUTSIDE = "a symlink leading outside the data folder: not read (copy the file in, or list it in a CSV)"


def _problem(entry: os.DirEntry, root: str) -> str:
    """Why ``entry`` (a non-folder) is not to be read, or "": only regular files are, and a
    symlink only when its target lies inside ``root``."""
    try:
        if not entry.is_file():  # follows a symlink: a FIFO, device, socket, or a link to one (or to nothing)
            return NOT_REGULAR
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([target, root]) != root:
                return OUTSIDE
    except (OSError, ValueError):
        return NOT_REGULAR
    return ""


def walk_files(folder: Path, within: Path | None = None) -> Iterator[tuple[str, bool, str]]:
    """(path, is an image, why it is not read or "") for every file below ``folder``, one
    at a time, in sorted order (hidden entries skipped): the one folder walk, for indexing
    and for prediction alike. Iterative, so a tree 1,100 folders deep is no RecursionError;
    symlinked folders below ``folder`` are not followed; a symlinked file is read only when
    its target lies inside ``within`` (default ``folder``).

    Example:
        >>> [p for p, image, problem in walk_files(Path("pets")) if image and not problem]   # doctest: +SKIP
    """
    root = os.path.realpath(within or folder)
    pending = [os.fspath(folder)]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: as os.walk, skipped
        folders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            else:
                yield entry.path, is_image_file(entry.name), _problem(entry, root)
        pending.extend(reversed(folders))  # depth first, in sorted order


def walk_images(folder: Path, root: Path | None = None) -> tuple[list[str], int, list[Skipped]]:
    """All readable image files below ``folder`` (sorted, hidden entries skipped), the
    non-image count, and the image files not read (special files, symlinks out of ``root``)."""
    found: list[str] = []
    skipped: list[Skipped] = []
    ignored = 0
    for path, image, problem in walk_files(folder, root):
        if not image:
            ignored += 1
        elif problem:
            skipped.append(Skipped(path, problem))
        else:
            found.append(path)
    return found, ignored, skipped


def _class_folders(root: Path, data: Path | None = None) -> tuple[dict[str, list[str]], int, list[Skipped]]:
    """{class: [files]} for ROOT/<class>/**, the count of ignored files, and the image files
    not read (symlinks judged against ``data``, the whole data folder, default ``root``)."""
    per_class: dict[str, list[str]] = {}
    ignored = 0
    skipped: list[Skipped] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():  # a symlinked class folder is followed (as ever); links inside it are judged
            files, n, unread = walk_images(Path(entry.path), data or root)
            per_class[entry.name] = files
            ignored += n
            skipped += unread
        else:
            ignored += 1  # a loose file at the top has no class
    return per_class, ignored, skipped


def _walk_notes(skipped: list[Skipped]) -> list[str]:
    """One note per kind of file the walk did not read, counted and named."""
    notes = []
    for reason, what in ((OUTSIDE, "symlinks leading outside the data folder"), (NOT_REGULAR, "special files (FIFO, device, socket)")):
        paths = [s.path for s in skipped if s.reason == reason]
        if paths:
            notes.append(f"{len(paths)} {what} not read, e.g. {paths[0]} (listed in skipped.csv)")
    return notes


def _check_classes(root: Path, per_class: dict[str, list[str]]) -> None:
    if not per_class or not any(per_class.values()):
        raise DataError(f"No images found in {root}. {LAYOUT_HELP}")
    empty = [name for name, files in per_class.items() if not files]
    if empty:
        raise DataError(f"Class folder {root / empty[0]} holds no images; add images or remove the folder.")
    if len(per_class) < 2:
        only = next(iter(per_class))
        raise DataError(f"Only one class ('{only}') found in {root}: a classifier needs at least two class folders. {LAYOUT_HELP}")


def _split_dirs(root: Path) -> dict[str, Path]:
    """train/ + val/ (+ test/); or train/ (+ test/) alone, the validation then split off train."""
    found: dict[str, Path] = {}
    others = 0
    for entry in os.scandir(root):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        split = SPLIT_NAMES.get(entry.name.lower())
        if split and split not in found:
            found[split] = Path(entry.path)
        else:
            others += 1
    if "train" in found and ("val" in found or others == 0):
        return found
    return {}


def scan_folders(root: Path) -> DataIndex:
    per_class, ignored, skipped = _class_folders(root)
    _check_classes(root, per_class)
    classes = sorted(per_class)
    samples = [Sample(p, label) for i, c in enumerate(classes) for label in [(i,)] for p in per_class[c]]
    return DataIndex(root, "folders", classes, False, {"all": samples}, ignored=ignored, skipped=skipped, notes=_walk_notes(skipped))


def scan_splits(root: Path, dirs: dict[str, Path]) -> DataIndex:
    per_split: dict[str, dict[str, list[str]]] = {}
    ignored = 0
    skipped: list[Skipped] = []
    for split, folder in dirs.items():
        per_split[split], n, unread = _class_folders(folder, root)
        ignored += n
        skipped += unread
    _check_classes(dirs["train"], per_split["train"])
    classes = sorted(per_split["train"])
    notes = _walk_notes(skipped) + ([] if "val" in per_split else ["no val/ folder: the validation split is taken from train/"])
    for split in ("val", "test"):
        if split not in per_split:
            continue
        extra = sorted(set(per_split[split]) - set(classes))
        if extra:
            raise DataError(
                f"{dirs[split]} has classes {extra} that {dirs['train']} lacks; "
                "the model cannot learn them. Add training images or remove those folders."
            )
        missing = [c for c in classes if not per_split[split].get(c)]
        if missing:
            notes.append(f"{split} split has no images for classes {missing}")
    samples = {split: [Sample(p, (classes.index(c),)) for c in sorted(pc) for p in pc[c]] for split, pc in per_split.items()}
    return DataIndex(root, "splits", classes, False, samples, ignored=ignored, skipped=skipped, notes=notes)


def scan_csv(path: Path) -> DataIndex:
    base = path.parent
    try:
        handle = io.TextIOWrapper(open_regular(path), newline="", encoding="utf-8-sig")  # regular files only, size-capped
    except OSError as exc:
        raise DataError(f"Cannot read CSV {path}: {exc.strerror or exc}.") from exc
    with handle:
        # csv.reader and column positions, not DictReader: a dict per row was a third of
        # the time on a million rows. Paths are joined and normalised, not resolve()d
        # (one system call per path component); measured in bench/index_scale.py.
        reader = csv.reader(handle)
        raw_fields = next(reader, [])
        fields = [f.strip().lower() for f in raw_fields]
        if "path" not in fields or not ({"label", "labels"} & set(fields)):
            raise DataError(
                f"CSV {path} has columns {fields}; it needs 'path' and 'label' (or 'labels' with ';'-separated names for multi-label)."
            )
        multilabel = "labels" in fields
        at_path, at_label = fields.index("path"), fields.index("labels" if multilabel else "label")
        width = max(at_path, at_label) + 1
        rows: list[tuple[str, tuple[str, ...]]] = []
        skipped: list[Skipped] = []
        base_dir = str(base)
        interned: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per label set, shared
        for line, raw in enumerate(reader, start=2):
            if not raw:
                continue
            raw = raw + [""] * (width - len(raw))
            rel, label = raw[at_path].strip(), raw[at_label].strip()
            if multilabel:
                names = tuple(sorted({n.strip() for n in label.split(";") if n.strip()}))
            else:  # one class per image, even if its name holds a ';'
                names = (label,) if label else ()
            if not rel:
                raise DataError(f"CSV {path} line {line}: empty path.")
            if not names and not multilabel:
                raise DataError(f"CSV {path} line {line}: empty label for {rel}.")
            full = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(base_dir, rel))
            if not is_regular(full):
                skipped.append(Skipped(full, NOT_REGULAR if os.path.exists(full) else "listed in the CSV but not found"))
                continue
            rows.append((full, interned.setdefault(names, names)))
    if not rows:
        raise DataError(f"No existing image files listed in {path}. {LAYOUT_HELP}")
    classes = sorted({n for _, names in rows for n in names})
    per_class = {c: [""] for c in classes}  # only the count of classes matters for the check
    _check_classes(path, per_class)
    position = {c: i for i, c in enumerate(classes)}
    codes = {names: tuple(position[n] for n in names) for names in interned.values()}
    samples = [Sample(p, codes[names]) for p, names in rows]
    return DataIndex(base, "csv", classes, multilabel, {"all": samples}, skipped=skipped)


def index_of_shards(found: Found) -> DataIndex:
    """The DataIndex of images inside shards, in shard and row (member) order, as a CSV's rows."""
    classes = sorted({n for rows in found.rows.values() for _, names in rows for n in names})
    _check_classes(found.root, {c: [""] for c in classes})
    position = {c: i for i, c in enumerate(classes)}
    samples = {split: [Sample(a, tuple(position[n] for n in names)) for a, names in rows] for split, rows in found.rows.items()}
    skipped = [Skipped(a, reason) for a, reason in found.skipped]
    notes = [f"{len(skipped)} entries in the shards not read, e.g. {s.path}: {s.reason} (listed in skipped.csv)" for s in skipped[:1]]
    return DataIndex(found.root, found.layout, classes, found.multilabel, samples, skipped=skipped, notes=notes + found.notes)


def scan(data: str | os.PathLike) -> DataIndex:
    """Index a folder or CSV (see the module docstring for the layouts).

    Example:
        >>> index = scan("pets/")            # doctest: +SKIP
        >>> index.classes, len(index.all_samples)
    """
    found = detect(os.fspath(data), walk_files)  # parquet or WebDataset shards (data/sources)
    if found is not None:
        return index_of_shards(found)
    root = Path(data).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist. {LAYOUT_HELP}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root} is a file but not a .csv. {LAYOUT_HELP}")
        return scan_csv(root.resolve())
    if not root.is_dir():
        raise DataError(f"{root} is not a regular file or a folder (a FIFO, a device?): never read. {LAYOUT_HELP}")
    root = root.resolve()
    dirs = _split_dirs(root)
    return scan_splits(root, dirs) if dirs else scan_folders(root)


# Reading every header of a 100k-image folder takes minutes on a slow disk; a fixed-stride
# sample of this many files describes the sizes just as well (as report/datainfo.py does).
SIZE_SAMPLE = 2000


@dataclass(frozen=True)
class ImageSizes:
    """Shorter sides of (a fixed-stride sample of) the files, from headers only.

    A planner reads it to let the input size follow the images: a 28 px garment need not
    become 224 px. ``short`` is empty when no header could be read.
    """

    examined: int  # headers read (the sample)
    total: int  # files in the index
    short: tuple[int, ...]  # shorter side of every readable sampled header, px

    def quantile(self, q: float) -> int | None:
        """The q-quantile (0..1) of the shorter sides, px; None without a readable header."""
        if not self.short:
            return None
        ordered = sorted(self.short)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def median(self) -> int | None:
        return self.quantile(0.5)

    def input_size(self, default: int, multiple: int = 1) -> int:
        """The model input side for these images: ``default`` (the base's), or the median
        shorter side when smaller (no upscaling of typical images), rounded up to ``multiple``.

        Example:
            >>> ImageSizes(3, 3, (28, 28, 28)).input_size(224)
            28
            >>> ImageSizes(3, 3, (600, 480, 800)).input_size(224)
            224
        """
        median = self.median
        if median is None or median >= default:
            return default
        return min(default, -(-median // multiple) * multiple)


def image_sizes(paths: list[str], limit: int = SIZE_SAMPLE) -> ImageSizes:
    """Shorter sides from the headers of at most ``limit`` files, every k-th of ``paths``.

    Example:
        >>> sizes = image_sizes([s.path for s in index.all_samples])   # doctest: +SKIP
        >>> sizes.median, sizes.input_size(224)                        # (28, 28) on Fashion-MNIST
    """
    import warnings

    from PIL import Image

    from headstart.preprocess import open_image

    step = max(1, -(-len(paths) // limit))
    chosen = paths[::step]
    short: list[int] = []
    for path in chosen:
        try:
            with warnings.catch_warnings():  # huge images are sizes like any other here
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with open_image(path) as im:  # the header only: no pixels decoded
                    short.append(min(im.size))  # EXIF rotation swaps the sides, never changes the shorter one
        except Exception:  # unreadable files are skipped and listed by the store
            continue
    return ImageSizes(len(chosen), len(paths), tuple(short))
