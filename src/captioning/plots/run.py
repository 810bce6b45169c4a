"""The plot stage: every figure from the pipeline's outputs."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from captioning.data.coco import load_captions, references_of
from captioning.decode.beam import beam_search
from captioning.evaluate.run import load_predictions
from captioning.features.store import FeatureStore
from captioning.models.attached_encoder import ImageRows, encode_images, image_encoder
from captioning.models.decoders import ImageFeatures
from captioning.models.encoders import encoder_spec
from captioning.models.loading import load_model_folder
from captioning.plots.attention import plot_attention
from captioning.plots.curves import plot_training_curves
from captioning.plots.examples import plot_examples
from captioning.plots.figure import no_data, plt, save_png
from captioning.plots.scores import plot_score_distributions
from captioning.plots.words import plot_word_frequencies


def plot_attention_examples(model_dir: Path, features_dir: Path, image_dir: Path, image_ids: list[int],
                            out_png: Path) -> None:
    """One attention figure (first example image) or a panel saying the decoder has no attention."""
    loaded = load_model_folder(model_dir)
    if not loaded.has_attention or not image_ids:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        no_data(ax, f"decoder {loaded.decoder_name!r} has no attention over the image's grid to show")
        save_png(fig, out_png)
        return
    model = loaded.ours
    store = FeatureStore(features_dir)
    row = store.row_of[image_ids[0]]
    encoder = image_encoder(model.decoder)
    if encoder is not None:
        with torch.inference_mode():
            feats = encode_images(encoder,
                                  ImageRows(image_dir, [image_ids[0]], encoder_spec(model.encoder["name"])).load([0]),
                                  True)
    else:
        feats = ImageFeatures(*store.tensors([row]))
    hyp = beam_search(model.decoder, feats, model.vocab.start_id, model.vocab.end_id, 1, model.vocab.max_length)[0]
    words = [model.vocab.words[t] for t in hyp.tokens]
    h, w, _ = store.meta["grid_shape"]
    alphas = hyp.attention.numpy() if hyp.attention is not None else np.zeros((0, h * w))
    plot_attention(image_dir / f"{image_ids[0]}.jpg", words, alphas, (h, w), out_png)


def run_plots(predictions_path: Path, subset_json: Path, image_dir: Path, train_logs: Path, per_image_csv: Path,
              model_dir: Path, features_dir: Path, examples: int, seed: int, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = load_predictions(predictions_path)
    references = references_of(load_captions(subset_json))
    plot_training_curves(train_logs, out_dir / "loss.png")
    plot_score_distributions(per_image_csv, out_dir / "scores.png")
    plot_word_frequencies(list(predictions.values()), [c for i in predictions for c in references.get(i, [])],
                          out_dir / "words.png")
    chosen = sorted(random.Random(seed).sample(sorted(predictions), min(examples, len(predictions))))
    items = [{"image_path": image_dir / f"{i}.jpg", "generated": predictions[i], "references": references.get(i, [])}
             for i in chosen if (image_dir / f"{i}.jpg").exists()]
    plot_examples(items, out_dir / "examples.png")
    plot_attention_examples(model_dir, features_dir, image_dir, chosen, out_dir / "attention.png")
    return [out_dir / f"{n}.png" for n in ("loss", "scores", "words", "examples", "attention")]
