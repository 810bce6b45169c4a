"""The evaluate stage's scoring on 5,000 COCO val2017 images with 5 references each: METEOR's JVM
scoring on one core while BLEU, ROUGE-L and CIDEr run in Python on the other (the stage's way) against
the metrics one after the other; both start METEOR's JVM once, both must give the same numbers.

python bench/evaluate_speed.py [--images 5000]
Candidates are drawn deterministically from other images' references (image k gets the first caption
of image k+1), so the scores are those of a plausible but wrong captioner.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from captioning.evaluate.coco_metrics import score_captions  # noqa: E402

CAPTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco" / "annotations" / "captions_val2017.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=5000)
    args = ap.parse_args()
    coco = json.loads(CAPTIONS.read_text())
    by_image: dict[int, list[str]] = {}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        by_image.setdefault(ann["image_id"], []).append(ann["caption"])
    ids = sorted(i for i, caps in by_image.items() if len(caps) >= 5)[:args.images]
    references = {i: by_image[i][:5] for i in ids}
    predictions = {i: by_image[ids[(k + 1) % len(ids)]][0] for k, i in enumerate(ids)}
    print(describe())
    print(f"{len(ids)} images, 5 references each, from {CAPTIONS.name}")
    results = {}
    for name, overlap in (("metrics one after the other", False), ("METEOR overlapped (the evaluate stage)", True)):
        start = time.perf_counter()
        summary, _ = score_captions(references, predictions, overlap=overlap)
        results[name] = (time.perf_counter() - start, summary)
    print("\n| way | seconds | BLEU-4 | METEOR | ROUGE-L | CIDEr |\n|---|---|---|---|---|---|")
    for name, (seconds, s) in results.items():
        print(f"| {name} | {seconds:.1f} | {s['bleu_4']:.4f} | {s.get('meteor', float('nan')):.4f} | "
              f"{s['rouge_l']:.4f} | {s['cider']:.4f} |")
    (t_seq, s_seq), (t_par, s_par) = results.values()
    same = s_seq == s_par
    print(f"ratio: overlapped is {t_seq / t_par:.2f}x faster; identical numbers: {same}; "
          f"target under 30 s: {'met' if t_par < 30 else 'not met'} ({t_par:.1f} s)")


if __name__ == "__main__":
    main()
