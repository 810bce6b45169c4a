"""MS COCO captions files: validated, then opened with pycocotools' COCO API; atomic writing.

A wrong format is refused before any work, naming the file and the entry at fault: pycocotools alone
would stop on a bare assert or KeyError. Once valid, a file is handed to `pycocotools.coco.COCO`, whose
index (`imgs`, `imgToAnns`) the pipeline reads, and predictions go through `COCO.loadRes`, as the
toolkit and the evaluation server take them.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pycocotools.coco import COCO

from captioning.io import InputError, atomic_write_json, read_json

RESULTS_FORMAT = 'COCO results format, a list of {"image_id": int, "caption": str}'


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_captions(path: str | Path) -> dict:
    """The file's COCO captions object (`images`, `annotations`), checked entry by entry."""
    path = Path(path)
    data = read_json(path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        raise InputError(f"{path}: not COCO captions format: expected an object with lists `images` and `annotations`")
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not _is_int(image.get("id")) or "file_name" not in image:
            raise InputError(f"{path}: images[{i}] needs an integer `id` and a `file_name` (COCO captions format)")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not _is_int(ann.get("image_id")) or "caption" not in ann:
            raise InputError(f"{path}: annotations[{i}] needs an integer `image_id` and a `caption` "
                             "(COCO captions format)")
    return data


def coco_api(data: dict, source: str | Path = "COCO captions") -> COCO:
    """A validated captions object indexed by pycocotools (its progress prints silenced)."""
    for i, ann in enumerate(data["annotations"]):
        if "id" not in ann:         # pycocotools keys its index by annotation id: a KeyError otherwise
            raise InputError(f"{source}: annotations[{i}] needs an `id` to be opened with pycocotools")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def open_coco(path: str | Path) -> COCO:
    """A COCO captions file, validated (errors name the file and entry), as a pycocotools COCO object."""
    return coco_api(load_captions(path), path)


def references_of(coco: COCO | dict) -> dict[int, list[str]]:
    """Image id -> its reference captions, in file order; `coco` is a COCO object or a load_captions dict."""
    if not isinstance(coco, COCO):
        coco = coco_api(coco)
    return {int(image_id): [ann["caption"] for ann in anns] for image_id, anns in coco.imgToAnns.items()}


def read_results(path: str | Path) -> list[dict]:
    """A predictions file in COCO results format, checked entry by entry: one string caption per integer id."""
    path = Path(path)
    results = read_json(path)
    if not isinstance(results, list):
        raise InputError(f"{path}: expected {RESULTS_FORMAT}")
    first: dict[int, int] = {}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not _is_int(r.get("image_id")) or not isinstance(r.get("caption"), str):
            raise InputError(f"{path}: [{i}] needs an integer `image_id` and a string `caption` ({RESULTS_FORMAT})")
        if r["image_id"] in first:      # the toolkit's scorers assert one caption per image
            raise InputError(f"{path}: [{i}] repeats image_id {r['image_id']} of [{first[r['image_id']]}]; "
                             "COCO results have one caption per image")
        first[r["image_id"]] = i
    return results


def load_results(coco: COCO, path: str | Path, references: str | Path = "the references") -> COCO:
    """Predictions for the images of `coco`, validated, then read by `COCO.loadRes` as the toolkit reads them.

    `references` is the file `coco` came from, named when a prediction is for an image not in it."""
    results = read_results(path)
    if not results:
        raise InputError(f"{path}: no results to evaluate")
    unknown = [i for i, r in enumerate(results) if r["image_id"] not in coco.imgs]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} results name images that are not in {references}, "
                         f"e.g. [{unknown[0]}] image_id {results[unknown[0]]['image_id']}")
    with contextlib.redirect_stdout(io.StringIO()):
        return coco.loadRes(results)


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
    """A COCO captions file that `open_coco` and `pycocotools.coco.COCO` open (annotations need an `id`)."""
    atomic_write_json(path, {"info": info or {}, "licenses": [], "images": images, "annotations": annotations},
                      indent=None)
