"""Where each dataset comes from: generated, downloaded, or a local copy; recorded in source.json."""
from __future__ import annotations

from pathlib import Path

from captioning.data.synthetic import generate_synthetic
from captioning.io import InputError, atomic_write_json, read_json
from captioning.params import DataParams

SOURCE_FILE = "source.json"
# Files whose content defines each local dataset (annotations by checksum, images by size and time).
MANIFEST_PATTERNS = {
    "coco2014": ["annotations/captions_*2014.json", "train2014/*.jpg", "val2014/*.jpg"],
    "coco2017": ["annotations/captions_*2017.json", "train2017/*.jpg", "val2017/*.jpg"],
    "flickr8k": ["Flickr8k_text/*.txt", "Flicker8k_Dataset/*.jpg"],
    "karpathy": ["*.json", "**/*.jpg"],
    "folder": ["captions.json", "**/*.jpg", "**/*.jpeg", "**/*.png"],
}


def prepare_source(data: DataParams, seed: int, out: Path) -> dict:
    out = Path(out)
    if data.source == "synthetic":
        s = data.synthetic
        summary = generate_synthetic(out, s.train, s.val, s.image_size, seed)
        info = {"source": "synthetic", "root": str(out), "layout": "coco2017", "summary": summary}
    else:
        from captioning.data.download import ensure_coco, manifest  # only real sources need it

        root = Path(data.root)
        if data.source in ("coco2014", "coco2017"):
            root = ensure_coco(data.source, root, data.images)
        elif not root.is_dir():
            raise InputError(f"data.root = {data.root!r}: folder not found; {data.source} is read from a local copy "
                             "there (see README, 'Real data')")
        info = {"source": data.source, "root": str(root.resolve()), "layout": data.source,
                "images": data.images, "manifest": manifest(root, MANIFEST_PATTERNS[data.source])}
    atomic_write_json(out / SOURCE_FILE, info)
    return info


def read_source(raw_dir: Path) -> dict:
    path = Path(raw_dir) / SOURCE_FILE
    if not path.exists():
        raise InputError(f"{path}: missing; run the download stage first (`dvc repro download`)")
    return read_json(path)
