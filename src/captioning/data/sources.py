"""Where each dataset comes from: generated, downloaded, or a local copy; recorded in source.json."""
from __future__ import annotations

from pathlib import Path

from captioning.data.imagefolder import MANIFEST_PATTERNS as IMAGEFOLDER_PATTERNS
from captioning.data.imagefolder import describe_imagefolder
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
    "imagefolder": IMAGEFOLDER_PATTERNS,
    "hf": IMAGEFOLDER_PATTERNS,         # of the folder the download stage writes
}


def prepare_source(data: DataParams, seed: int, out: Path) -> dict:
    out = Path(out)
    if data.source == "synthetic":
        s = data.synthetic
        summary = generate_synthetic(out, s.train, s.val, s.image_size, seed)
        info = {"source": "synthetic", "root": str(out), "layout": "coco2017", "summary": summary}
    elif data.source == "hf":
        info = _write_hf(data, out)
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
        if data.source == "imagefolder":    # read once here: a bad metadata line fails the download stage
            info["caption_column"] = data.caption_column
            info.update(describe_imagefolder(root, data.caption_column))
    atomic_write_json(out / SOURCE_FILE, info)
    return info


def _write_hf(data: DataParams, out: Path) -> dict:
    """The Hugging Face dataset written once into `out` as an imagefolder; later stages read it as one.

    The root is recorded as given (data/raw, relative), as for synthetic: source.json, part of the
    stage's output, then stays the same in every clone."""
    from captioning.data.download import manifest
    from captioning.data.hf_dataset import write_hf_dataset  # imports `datasets` (the hf extra) on use

    written = write_hf_dataset(data.hf, out)
    return {"source": "hf", "root": str(out), "layout": "imagefolder", **written,
            "manifest": manifest(out, MANIFEST_PATTERNS["hf"])}


def read_source(raw_dir: Path) -> dict:
    path = Path(raw_dir) / SOURCE_FILE
    if not path.exists():
        raise InputError(f"{path}: missing; run the download stage first (`dvc repro download`)")
    return read_json(path)
