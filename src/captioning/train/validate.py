"""Validation that selects a model decodes for real and scores with the COCO toolkit's scorers.

Greedy captions of the validation images are scored with pycocoevalcap's BLEU and CIDEr-D on our
tokenization (the PTB tokenizer needs a JVM per call; ours gives its tokens on every caption of COCO val2017
and Flickr8k, tests/test_tokenizer.py; the evaluate stage reports the official numbers).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from captioning.decode.beam import beam_search
from captioning.models.attached_encoder import active_encoder
from captioning.text.tokenizer import tokenize


def quick_scores(references: dict[int, list[str]], predictions: dict[int, str]) -> dict:
    ids = [i for i in predictions if i in references]
    if not ids:
        return {"bleu_4": 0.0, "cider": 0.0}
    gts = {i: [" ".join(tokenize(r)) for r in references[i]] for i in ids}
    res = {i: [" ".join(tokenize(predictions[i])) or "<empty>"] for i in ids}
    with contextlib.redirect_stdout(io.StringIO()):   # Bleu prints its internals
        bleu, _ = Bleu(4).compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu_4": float(bleu[3]), "cider": float(cider)}


@torch.inference_mode()
def greedy_captions(decoder, batches, vocab, max_length: int) -> dict[int, str]:
    """batches: iterable of (image_ids, ImageFeatures) already on the model's device."""
    out = {}
    for ids, feats in batches:
        for image_id, hyp in zip(ids, beam_search(decoder, feats, vocab.start_id, vocab.end_id, 1, max_length)):
            out[int(image_id)] = vocab.decode(hyp.tokens)
    return out


@torch.no_grad()
def greedy_scores(decoder, data, zero_features: bool, device, vocab, batch_size: int = 256) -> dict:
    """Greedy captions of every image of `data` (a SplitData) scored against its references: BLEU-4, CIDEr-D."""
    decoder.eval()
    rows = np.arange(len(data.ids))
    encoder = active_encoder(decoder)
    batches = ((np.asarray(data.ids)[rows[s:s + batch_size]],
                data.features(rows[s:s + batch_size], device, zero_features, decoder.needs_grid, encoder))
               for s in range(0, len(rows), batch_size))
    return quick_scores(data.references, greedy_captions(decoder, batches, vocab, vocab.max_length))
