"""The filter stage's logic: read a dataset in its own layout, sample seeded, disjoint splits.

Each reader returns pools of images (with their captions) per original split; sampling then takes
`subset.train/val/test` images from them. COCO-style sources have no public test split, so val and
test are disjoint samples of the official val images, as the Karpathy-style reports do.
"""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Optional

from captioning.data.coco import clean_annotations, load_captions
from captioning.data.imagefolder import read_imagefolder
from captioning.io import InputError, read_json

Pool = list[dict]          # images: {"id", "file_name", "path", "width"?, "height"?, "captions": [...]}


def _coco_pool(root: Path, split: str, year: str) -> tuple[Pool, dict]:
    coco = load_captions(root / "annotations" / f"captions_{split}{year}.json")
    annotations, skipped = clean_annotations(coco["images"], coco["annotations"])
    by_image = defaultdict(list)
    for ann in annotations:
        by_image[ann["image_id"]].append(ann["caption"])
    pool = [{"id": im["id"], "file_name": im["file_name"], "width": im.get("width"), "height": im.get("height"),
             "path": str(root / f"{split}{year}" / im["file_name"]), "coco_url": im.get("coco_url"),
             "captions": by_image.get(im["id"], [])}
            for im in coco["images"]]
    return pool, skipped


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(f"{path}: not found (Flickr8k layout: Flickr8k_text/ and Flicker8k_Dataset/)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _flickr8k_pools(root: Path) -> tuple[dict[str, Pool], dict]:
    text = root / "Flickr8k_text"
    captions, skipped = defaultdict(list), defaultdict(int)
    for line in _read_lines(text / "Flickr8k.token.txt"):
        key, _, caption = line.partition("\t")
        name = key.split("#")[0]
        if caption.strip():
            captions[name].append(" ".join(caption.split()))
        else:
            skipped["empty caption"] += 1
    lists = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
    names = {split: _read_lines(text / f) for split, f in lists.items() if (text / f).exists() or split != "test"}
    ids = {n: i + 1 for i, n in enumerate(sorted({n for ns in names.values() for n in ns}))}
    pools = {split: [{"id": ids[n], "file_name": n, "path": str(root / "Flicker8k_Dataset" / n), "captions": captions.get(n, [])}
                     for n in ns] for split, ns in names.items()}
    return pools, dict(skipped)


def _karpathy_pools(root: Path) -> tuple[dict[str, Pool], dict]:
    files = sorted(root.glob("dataset_*.json"))
    if not files:
        raise InputError(f"data.root = {root}: no dataset_*.json (Karpathy split file) found")
    data = read_json(files[0])
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{files[0]}: not a Karpathy split file: expected an object with a list `images`")
    pools = defaultdict(list)
    for i, im in enumerate(data["images"]):
        try:
            split = {"restval": "train"}.get(im["split"], im["split"])
            path = root / im.get("filepath", "") / im["filename"]
            caps = [s["raw"] for s in im["sentences"] if str(s.get("raw", "")).strip()]
        except (KeyError, TypeError) as e:
            raise InputError(f"{files[0]}: images[{i}] lacks {e} (needs split, filename, sentences[].raw)") from None
        pools[split].append({"id": int(im.get("cocoid", im.get("imgid", i))), "file_name": im["filename"],
                             "path": str(path), "captions": caps})
    return dict(pools), {}


def _folder_pool(root: Path) -> tuple[Pool, dict]:
    coco = load_captions(root / "captions.json")
    annotations, skipped = clean_annotations(coco["images"], coco["annotations"])
    by_image = defaultdict(list)
    for ann in annotations:
        by_image[ann["image_id"]].append(ann["caption"])
    return [{"id": im["id"], "file_name": im["file_name"], "path": str(root / im["file_name"]),
             "captions": by_image.get(im["id"], [])} for im in coco["images"]], skipped


def _imagefolder_pools(root: Path, caption_column: Optional[str]) -> tuple[dict[str, Pool], dict[str, dict]]:
    """imagefolder (and hf, written as one): its pools with captions cleaned as COCO files' are (empty ones
    dropped, long ones cut, whitespace joined), each drop counted in its split's skips."""
    pools, skipped = read_imagefolder(root, caption_column)
    for split, pool in pools.items():
        images = [{"id": im["id"]} for im in pool]
        captions = [{"image_id": im["id"], "caption": c} for im in pool for c in im["captions"]]
        kept, dropped = clean_annotations(images, captions)
        by_image = defaultdict(list)
        for ann in kept:
            by_image[ann["image_id"]].append(ann["caption"])
        pools[split] = [{**im, "captions": by_image.get(im["id"], [])} for im in pool]
        for reason, count in dropped.items():
            skipped[split][reason] = skipped[split].get(reason, 0) + count
    return pools, skipped


def _usable(pool: Pool, skipped: dict, require_files: bool = True) -> Pool:
    """Images whose file exists and that have at least one caption; the rest are counted by reason.

    require_files=False (COCO with data.images = per_image): files are fetched later, by the resize stage.
    """
    kept = []
    for im in pool:
        if not im["captions"]:
            skipped["no caption"] = skipped.get("no caption", 0) + 1
        elif require_files and not Path(im["path"]).is_file():
            skipped["missing file"] = skipped.get("missing file", 0) + 1
        else:
            kept.append(im)
    return sorted(kept, key=lambda im: im["id"])


def _take(pool: Pool, size: Optional[int], key: str, source: str, rng: random.Random) -> tuple[Pool, Pool]:
    if size is None:
        return pool, []
    if size > len(pool):
        raise InputError(f"{key} = {size} but {source} has only {len(pool)} usable images for it; "
                         f"lower {key} or set it to null (all)")
    chosen = rng.sample(range(len(pool)), size)
    picked = set(chosen)
    return [pool[i] for i in sorted(chosen)], [im for i, im in enumerate(pool) if i not in picked]


def build_subsets(source: str, root: Path, sizes: dict, seed: int, require_files: bool = True,
                  caption_column: Optional[str] = None) -> tuple[dict[str, dict], dict]:
    """caption_column: imagefolder's metadata key (None = text, captions or caption), from source.json."""
    root = Path(root)
    skipped: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
    rng = random.Random(seed)
    if source in ("synthetic", "coco2014", "coco2017"):
        year = "2014" if source == "coco2014" else "2017"
        train_pool, skipped["train"] = _coco_pool(root, "train", year)
        val_pool, skipped["val"] = _coco_pool(root, "val", year)
        pools = {"train": train_pool, "val": val_pool}
    elif source == "flickr8k":
        pools, common = _flickr8k_pools(root)
        skipped["train"] = common
    elif source == "karpathy":
        pools, _ = _karpathy_pools(root)
    elif source == "folder":
        pool, skipped["train"] = _folder_pool(root)
        pools = {"train": pool}
    elif source in ("imagefolder", "hf"):   # split folders, or one pool split like `folder`
        pools, skipped = _imagefolder_pools(root, caption_column)
    else:
        raise InputError(f"data.source = {source!r}: unknown")

    chosen: dict[str, Pool] = {}
    train = _usable(pools.get("train", []), skipped["train"], require_files)
    chosen["train"], rest = _take(train, sizes.get("train"), "subset.train", f"{source} train", rng)
    val = _usable(pools.get("val", []), skipped["val"], require_files) if "val" in pools else rest
    if "test" in pools:                 # a real test split (Flickr8k with its list, Karpathy)
        chosen["val"], _ = _take(val, sizes.get("val"), "subset.val", f"{source} val", rng)
        test = _usable(pools["test"], skipped["test"])
        chosen["test"], _ = _take(test, sizes.get("test"), "subset.test", f"{source} test", rng)
    else:                               # val and test: disjoint samples of one pool
        val_size, test_size = sizes.get("val"), sizes.get("test")
        if val_size is None and test_size is None:
            val_size = len(val) // 2
        if val_size is None:
            val_size = max(len(val) - test_size, 0)
        chosen["val"], remaining = _take(val, val_size, "subset.val", f"{source} val", rng)
        chosen["test"], _ = _take(remaining, test_size, "subset.test", f"{source} val images left after subset.val", rng)

    splits, stats = {}, {"source": source}
    for split, images in chosen.items():
        entries, annotations = [], []
        for im in images:
            entries.append({k: im[k] for k in ("id", "file_name", "width", "height", "path", "coco_url") if im.get(k) is not None})
            annotations += [{"id": len(annotations) + 1, "image_id": im["id"], "caption": c} for c in im["captions"]]
        splits[split] = {"info": {"source": source, "split": split, "seed": seed}, "images": entries, "annotations": annotations}
        stats[split] = {"images": len(entries), "captions": len(annotations), "skipped": skipped.get(split, {})}
    return splits, stats
