"""The evaluate stage: toolkit metrics, per-image scores and text statistics, written atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from captioning.data.coco import load_captions, references_of
from captioning.evaluate.coco_metrics import score_captions
from captioning.evaluate.text_stats import text_statistics
from captioning.io import InputError, atomic_write_json, atomic_write_text, read_json
from captioning.text.vocabulary import Vocabulary

PER_IMAGE_COLUMNS = ["image_id", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"]


def load_predictions(path: Path) -> dict[int, str]:
    raw = read_json(path)
    if not isinstance(raw, list) or not all(isinstance(r, dict) and "image_id" in r and "caption" in r for r in raw):
        raise InputError(f"{path}: expected COCO results format, a list of {{\"image_id\", \"caption\"}}")
    return {int(r["image_id"]): str(r["caption"]) for r in raw}


def run_evaluate(predictions_path: Path, subset_dir: Path, split: str, vocab_path: Path, spice: bool,
                 out: Path, per_image_out: Path, text_out: Path) -> dict:
    predictions = load_predictions(predictions_path)
    references = references_of(load_captions(subset_dir / f"{split}.json"))
    summary, per_image = score_captions(references, predictions, spice=spice)
    summary = {"split": split, **summary}
    atomic_write_json(out, summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(per_image)
    atomic_write_text(per_image_out, buf.getvalue())
    train_captions = [a["caption"] for a in load_captions(subset_dir / "train.json")["annotations"]]
    stats = text_statistics(list(predictions.values()), Vocabulary.load(vocab_path).words[4:], train_captions)
    atomic_write_json(text_out, stats)
    return summary
