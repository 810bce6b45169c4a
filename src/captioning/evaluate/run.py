"""The evaluate stage: toolkit metrics, per-image scores and text statistics, written atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from captioning.data.coco import load_captions, load_results, open_coco, read_results, references_of
from captioning.evaluate.coco_metrics import score_captions
from captioning.evaluate.text_stats import text_statistics
from captioning.io import atomic_write_json, atomic_write_text
from captioning.text.vocabulary import Vocabulary

PER_IMAGE_COLUMNS = ["image_id", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"]


def load_predictions(path: Path) -> dict[int, str]:
    """Image id -> caption of a COCO results file, validated (see `captioning.data.coco.read_results`)."""
    return {r["image_id"]: r["caption"] for r in read_results(path)}


def run_evaluate(predictions_path: Path, subset_dir: Path, split: str, vocab_path: Path, spice: bool,
                 out: Path, per_image_out: Path, text_out: Path) -> dict:
    references_path = subset_dir / f"{split}.json"
    coco = open_coco(references_path)
    # Read as the toolkit reads them (COCO.loadRes), after the project's checks that name the entry at fault.
    results = load_results(coco, predictions_path, references_path)
    predictions = {image_id: anns[0]["caption"] for image_id, anns in results.imgToAnns.items()}
    references = references_of(coco)
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
