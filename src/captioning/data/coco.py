"""MS COCO captions files: validated loading and atomic writing.

A wrong format is refused before any work, naming the file and what is missing.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from captioning.io import InputError, atomic_write_json, read_json


def load_captions(path: str | Path) -> dict:
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{path}: not COCO captions format: expected an object with lists `images` and `annotations`")
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or "file_name" not in image:
            raise InputError(f"{path}: images[{i}] needs an integer `id` and a `file_name` (COCO captions format)")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) or "caption" not in ann:
            raise InputError(f"{path}: annotations[{i}] needs an integer `image_id` and a `caption` (COCO captions format)")
    return data


def references_of(coco: dict) -> dict[int, list[str]]:
    """Image id -> its reference captions, in file order."""
    refs = defaultdict(list)
    for ann in coco["annotations"]:
        refs[int(ann["image_id"])].append(ann["caption"])
    return dict(refs)


def clean_annotations(images: list[dict], annotations: list[dict], max_chars: int = 1000) -> tuple[list[dict], dict]:
    """Drop captions that are empty, not text, or name an unknown image; cut absurdly long ones.

    Returns the kept annotations and counts of what was dropped or cut, by reason.
    """
    known = {image["id"] for image in images}
    kept, skipped = [], {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for ann in annotations:
        caption = ann.get("caption")
        if ann["image_id"] not in known:
            skip("unknown image_id")
        elif not isinstance(caption, str):
            skip("caption not text")
        elif not caption.strip():
            skip("empty caption")
        else:
            if len(caption) > max_chars:
                skip("caption cut to 1000 characters")
                caption = caption[:max_chars]
            kept.append({**ann, "caption": " ".join(caption.split())})
    return kept, skipped


def write_captions(path: str | Path, images: list[dict], annotations: list[dict], info: dict | None = None) -> None:
    atomic_write_json(path, {"info": info or {}, "licenses": [], "images": images, "annotations": annotations}, indent=None)
