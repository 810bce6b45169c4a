"""The Hugging Face `datasets` imagefolder layout: image files under a root, captions in metadata.jsonl files.

Read as the `datasets` library reads it, without importing it: each metadata.jsonl line is one JSON object
with a `file_name` relative to that metadata file's folder and the image's captions (a string or a list of
strings); top-level folders train/, validation/ (or val/, valid/, dev/) and test/ are splits. One
metadata.jsonl per split folder and one at the root (file names with the split folder) both work here
(`datasets` 5 itself reads only the ones inside split folders when there are split folders). Without
split folders every image is one pool, which the filter stage splits like `folder`. A malformed line stops
with the file, the line and the fault; images without captions or without a metadata line, and lines whose
image is missing, are only counted (metrics/data.json), as the other sources count their gaps.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Optional

from captioning.io import InputError, file_digest

METADATA = "metadata.jsonl"
CAPTION_COLUMNS = ("text", "captions", "caption")        # tried in this order when no column is named
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Top-level folder -> the project's split (the `datasets` library's split keywords for train/validation/test).
SPLIT_FOLDERS = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val",
                 "dev": "val", "test": "test", "testing": "test"}
MANIFEST_PATTERNS = [f"**/{METADATA}"] + [f"**/*{suffix}" for suffix in IMAGE_SUFFIXES]
LAYOUT_HINT = ('imagefolder layout: images plus metadata.jsonl lines such as {"file_name": "a.jpg", '
               '"text": ["a caption", "another"]}')

Pool = list[dict]


def caption_list(value, where: str) -> list[str]:
    """A row's captions as a list: one string is one caption; null or [] none (counted later, not fatal).

    Anything else (a number, a dict, a list holding non-strings) is refused, naming `where`: quietly turning
    it into text would train on captions nobody wrote.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return list(value)
    raise InputError(f"{where}: the caption is {type(value).__name__} {json.dumps(value, default=str)[:80]}, "
                     "not a string or a list of strings")


def choose_caption_column(columns: list[str], wanted: Optional[str], where: str, setting: str) -> str:
    """The named caption column, or the first of text, captions, caption; else an error naming `setting`."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InputError(f"{where}: no `{wanted}` ({setting} = {wanted!r}); it has: {', '.join(columns)}")
    for column in CAPTION_COLUMNS:
        if column in columns:
            return column
    raise InputError(f"{where}: no caption column: none of {', '.join(CAPTION_COLUMNS)} (it has: "
                     f"{', '.join(columns)}); set {setting} to the one holding the captions")


def _parse_line(raw: bytes, where: str) -> dict:
    """One metadata line as an object with a `file_name`; the error says what is wrong with it."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not JSON ({e.msg}, column {e.colno}); {LAYOUT_HINT}") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: a JSON {type(record).__name__}, not an object; {LAYOUT_HINT}")
    name = record.get("file_name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: no `file_name` (the image's path, relative to the metadata file's folder)")
    return record


def read_metadata(path: Path, caption_column: Optional[str]) -> list[tuple[str, list[str]]]:
    """(file_name, captions) for each line of one metadata.jsonl, in order.

    With no column named, the file's first line picks it (text, captions, caption) and every line must have
    that key: `null` or `[]` marks an image without captions, a missing key is a mistake in the file.
    """
    rows, column, chosen_at = [], caption_column, None
    data = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf")      # a byte-order mark is not JSON
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        record = _parse_line(raw, where)
        if chosen_at is None:
            column, chosen_at = choose_caption_column(list(record), caption_column, where, "data.caption_column"), number
        elif column not in record:
            origin = "data.caption_column" if caption_column else f"chosen from line {chosen_at}"
            raise InputError(f"{where}: no `{column}` (the caption column, {origin}); an image without "
                             f'captions needs "{column}": null or []')
        rows.append((record["file_name"], caption_list(record[column], f"{where}, `{column}`")))
    return rows


def _hidden(relative: Path) -> bool:
    """Dot folders and files (caches, editors' and our own temporary files) are not part of the dataset."""
    return any(part.startswith(".") for part in relative.parts)


def metadata_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(METADATA) if p.is_file() and not _hidden(p.relative_to(root)))


def image_files(root: Path) -> set[str]:
    """Root-relative POSIX paths of the image files under `root` (any depth)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p.relative_to(root)) and p.is_file()}


def _relative_to_root(root: Path, metadata: Path, file_name: str, where: str) -> str:
    """A metadata line's file_name (relative to its own folder) as a root-relative POSIX path."""
    folder = metadata.parent.relative_to(root).as_posix()
    joined = os.path.normpath(PurePosixPath(folder, file_name.replace("\\", "/")).as_posix()).replace("\\", "/")
    if PurePosixPath(file_name).is_absolute() or joined == ".." or joined.startswith("../"):
        raise InputError(f"{where}: file_name {file_name!r} points outside data.root ({root})")
    return joined


def collect_captions(root: Path, caption_column: Optional[str]) -> dict[str, list[str]]:
    """Root-relative image path -> its captions, from every metadata.jsonl (lines naming one image add up)."""
    files = metadata_files(root)
    if not files:
        raise InputError(f"data.root = {root}: no {METADATA} found; {LAYOUT_HINT}")
    captions: dict[str, list[str]] = {}
    for path in files:
        for number, (file_name, caps) in enumerate(read_metadata(path, caption_column), 1):
            relative = _relative_to_root(root, path, file_name, f"{path}, entry {number}")
            captions.setdefault(relative, []).extend(caps)
    return captions


def split_folders(root: Path) -> dict[str, str]:
    """Top-level folder name -> project split, for the folders named like a split; empty = one pool."""
    return {p.name: SPLIT_FOLDERS[p.name.lower()] for p in root.iterdir()
            if p.is_dir() and p.name.lower() in SPLIT_FOLDERS}


def read_imagefolder(root: str | Path, caption_column: Optional[str] = None) -> tuple[dict[str, Pool], dict]:
    """Pools per project split ({"train": all} without split folders) and skip counts per split.

    Pool entries are {"id", "file_name", "path", "captions"}; ids number every image path in sorted order, so
    they are stable for a given folder. Images without captions and lines whose file is missing stay in the
    pools: the filter's checks count those. Images without any metadata line, and in split mode images
    outside the split folders, are counted here.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data.root = {root}: folder not found; {LAYOUT_HINT}")
    captions = collect_captions(root, caption_column)
    folders = split_folders(root)
    pools: dict[str, Pool] = {split: [] for split in folders.values()} or {"train": []}   # empty ones too
    skipped: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
    for number, relative in enumerate(sorted(captions.keys() | image_files(root)), 1):
        top = relative.split("/", 1)[0] if "/" in relative else None
        split = folders.get(top) if folders else "train"
        if split is None:
            skipped["train"]["outside the split folders"] = skipped["train"].get("outside the split folders", 0) + 1
        elif relative not in captions:
            skipped[split]["no metadata line"] = skipped[split].get("no metadata line", 0) + 1
        else:
            pools[split].append({"id": number, "file_name": relative, "path": str(root / relative),
                                 "captions": captions[relative]})
    return pools, skipped


def describe_imagefolder(root: str | Path, caption_column: Optional[str] = None) -> dict:
    """What the download stage records in source.json: the folder read once (a bad line fails there, early),
    its counts, and each metadata file's checksum (the manifest only sees names and sizes of .jsonl files)."""
    root = Path(root)
    pools, skipped = read_imagefolder(root, caption_column)
    summary = {split: {"images": len(pool), "captions": sum(len(im["captions"]) for im in pool),
                       "skipped": skipped[split]} for split, pool in pools.items()}
    checksums = {p.relative_to(root).as_posix(): file_digest(p) for p in metadata_files(root)}
    return {"splits": "folders" if split_folders(root) else "one pool", "summary": summary,
            "metadata_sha256": checksums}
