"""`data.source: hf`: a dataset read once through Hugging Face `datasets`, written out as an imagefolder.

The download stage writes every image as an ordinary JPEG or PNG file, with one metadata.jsonl per split
folder, under its --out (data/raw). DVC then hashes plain files, and the later stages read the folder exactly
as `data.source: imagefolder`: nothing after the download stage imports `datasets` or reads its Arrow cache.
`datasets` is an optional extra (`pip install -e '.[hf]'`), imported only here.
"""
from __future__ import annotations

import io
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from captioning.data.imagefolder import METADATA, caption_list, choose_caption_column
from captioning.io import InputError, atomic_dir
from captioning.params import HfDatasetParams

# The dataset's split names -> the project's split folders (restval: the Karpathy splits' extra training images).
HUB_SPLITS = {"train": "train", "restval": "train", "validation": "val", "valid": "val", "val": "val",
              "dev": "val", "test": "test"}
POOL_FOLDER = "pool"            # one chosen split: not a split folder name, so the filter stage splits it
WRITTEN_FOLDERS = ("train", "val", "test", POOL_FOLDER)
CAPTION_KEY = "text"           # the key written in metadata.jsonl (the first one the imagefolder reader tries)
SAVED_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")   # what save_to_disk leaves in a folder
KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}                             # written byte for byte
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def require_datasets():
    """The `datasets` module, or an error saying which extra brings it (the core install runs without it)."""
    try:
        import datasets
    except ImportError:
        raise InputError("data.source = 'hf' needs Hugging Face datasets, an optional extra: "
                         "pip install -e '.[hf]'") from None
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A folder written by Dataset.save_to_disk or DatasetDict.save_to_disk (read with load_from_disk)."""
    return path.is_dir() and any((path / name).is_file() for name in SAVED_FILES)


def _from_disk(datasets, path: Path, p: HfDatasetParams):
    """A save_to_disk folder: its DatasetDict, or the one split data.hf.split names, or its single Dataset."""
    if p.config is not None:
        raise InputError(f"data.hf.config = {p.config!r}: a save_to_disk folder ({path}) has no configurations; "
                         "set it to null")
    loaded = datasets.load_from_disk(str(path))
    if p.split is None:
        return loaded
    if not isinstance(loaded, datasets.DatasetDict):
        raise InputError(f"data.hf.split = {p.split!r}: {path} holds a single Dataset, no splits; set it to null")
    if p.split not in loaded:
        raise InputError(f"data.hf.split = {p.split!r}: {path} has the splits {', '.join(loaded)}")
    return loaded[p.split]


def load_hf_splits(p: HfDatasetParams) -> dict:
    """{split name: Dataset}, or {None: Dataset} for one pool (a chosen split, or a saved single Dataset)."""
    datasets = require_datasets()
    path = Path(p.name).expanduser()
    if is_saved_dataset(path):
        loaded = _from_disk(datasets, path, p)
    else:
        try:
            loaded = datasets.load_dataset(p.name, p.config, split=p.split)
        except (datasets.exceptions.DatasetsError, FileNotFoundError, ValueError, ConnectionError) as e:
            raise InputError(f"data.hf.name = {p.name!r} (config {p.config!r}, split {p.split!r}): "
                             f"cannot load it: {e}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {None: loaded}


def split_folders_for(splits: dict, name: str) -> dict:
    """Each split's folder; a name other than train/validation/test is refused, pointing to data.hf.split."""
    if list(splits) == [None]:
        return {None: POOL_FOLDER}
    unknown = [s for s in splits if s not in HUB_SPLITS]
    if unknown:
        raise InputError(f"data.hf.name = {name!r}: splits {', '.join(unknown)} are not train, validation or test; "
                         "choose one with data.hf.split (the filter stage then splits it by subset.*)")
    return {s: HUB_SPLITS[s] for s in splits}


def image_bytes(value) -> bytes | None:
    """An undecoded Image value ({"bytes", "path"}) as the file's bytes; None when the row has no image."""
    if value is None:
        return None
    if value.get("bytes") is not None:
        return value["bytes"]
    path = Path(value["path"]) if value.get("path") else None
    return path.read_bytes() if path is not None and path.is_file() else None


def write_image(data: bytes, folder: Path, stem: str) -> str | None:
    """The image as its own file: JPEG and PNG bytes as they are (no second lossy encoding), other formats
    decoded and saved as PNG (lossless). None when Pillow cannot read it (the row is then counted)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in KEPT_FORMATS:
                name = stem + KEPT_FORMATS[image.format]
                (folder / name).write_bytes(data)       # the folder is a staging one, replaced whole at the end
                return name
            image.load()
            if image.mode not in PNG_MODES:
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            image.save(folder / f"{stem}.png", format="PNG")
            return f"{stem}.png"
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def checked_columns(ds, p: HfDatasetParams, label: str):
    """(caption columns, the dataset with just those and the image column, its images left undecoded): the
    image bytes are written as they are, and other columns (some datasets carry large ones) are never read."""
    datasets = require_datasets()
    columns = list(ds.column_names)
    if p.image_column not in columns:
        raise InputError(f"{label}: no image column `{p.image_column}` (data.hf.image_column); it has: "
                         f"{', '.join(columns)}")
    feature = ds.features[p.image_column]
    if not isinstance(feature, datasets.Image):
        raise InputError(f"{label}: column `{p.image_column}` holds {feature}, not images (datasets.Image); "
                         "set data.hf.image_column to the image column")
    wanted = p.caption_column if isinstance(p.caption_column, list) else [p.caption_column]
    captions = [choose_caption_column(columns, c, label, "data.hf.caption_column") for c in wanted]
    ds = ds.select_columns([p.image_column, *captions]).cast_column(p.image_column, datasets.Image(decode=False))
    return captions, ds


def row_captions(row: dict, columns: list[str], where: str) -> list[str]:
    """Every caption of a row, from one column (a string or a list) or several (one caption each)."""
    return [c for column in columns for c in caption_list(row[column], f"{where}, column `{column}`")]


def write_split_folder(parts: list, folder: Path, p: HfDatasetParams) -> dict:
    """One project split's folder: each row's image file and its metadata line. A row without a readable
    image keeps its line, so the filter stage counts it (as a missing file) with the other gaps."""
    counts: Counter = Counter()
    with atomic_dir(folder) as staging:
        lines = []
        for split, ds in parts:
            label = f"data.hf.name = {p.name!r}, split {split or p.split or '(the only one)'}"
            columns, ds = checked_columns(ds, p, label)
            for i, row in enumerate(ds):
                stem = f"{split or 'row'}-{i:07d}"
                captions = row_captions(row, columns, f"{label}, row {i}")
                data = image_bytes(row[p.image_column])
                name = write_image(data, staging, stem) if data is not None else None
                counts["rows"] += 1
                if name is None:
                    counts["no readable image"] += 1
                    name = f"{stem}.jpg"
                lines.append(json.dumps({"file_name": name, CAPTION_KEY: captions}, ensure_ascii=False))
        (staging / METADATA).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return dict(counts)


def write_hf_dataset(p: HfDatasetParams, out: str | Path) -> dict:
    """Write the dataset under `out` as an imagefolder (split folders train/val/test, or one pool folder);
    returns what source.json records about it. Folders of an earlier run's other layout are removed."""
    out = Path(out)
    splits = load_hf_splits(p)
    parts_by_folder: dict[str, list] = defaultdict(list)
    for split, folder in split_folders_for(splits, p.name).items():
        parts_by_folder[folder].append((split, splits[split]))
    for stale in WRITTEN_FOLDERS:
        if stale not in parts_by_folder:
            shutil.rmtree(out / stale, ignore_errors=True)
    written = {folder: write_split_folder(parts, out / folder, p) for folder, parts in parts_by_folder.items()}
    return {"dataset": p.model_dump(), "caption_column": CAPTION_KEY,
            "splits": {folder: [s for s, _ in parts] for folder, parts in parts_by_folder.items()},
            "written": written}
