"""COCO caption metrics through pycocoevalcap, exactly as the toolkit computes them.

PTB tokenizer, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (and SPICE when asked). Values are on the
toolkit's 0..1 scale (CIDEr may exceed 1). A failing Java scorer (METEOR, SPICE) is reported and
left out; the other metrics still come out.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captioning.io import InputError

JAVA_HELP = ("Java is needed by the COCO caption toolkit (PTB tokenizer, METEOR, SPICE) and was not found on PATH; "
             "install it, e.g. `apt-get install default-jre-headless` (Debian/Ubuntu) or `brew install openjdk`")


def require_java() -> None:
    if shutil.which("java") is None:
        raise InputError(JAVA_HELP)


def _meteor(gts: dict, res: dict) -> tuple[float, list[float]] | None:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = None
    try:
        scorer = Meteor()                       # one JVM for the whole evaluation
        score, scores = scorer.compute_score(gts, res)
        return float(score), [float(s) for s in scores]
    except Exception as e:  # the JVM subprocess dies with a broken pipe on some inputs/machines
        print(f"evaluate: METEOR could not run ({type(e).__name__}: {e}); the other metrics are reported",
              file=sys.stderr)
        return None
    finally:
        if scorer is not None:
            _close_meteor(scorer)


def _close_meteor(scorer) -> None:
    """pycocoevalcap leaves METEOR's JVM running; end it."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    with contextlib.suppress(Exception):
        proc.stdin.close()
    with contextlib.suppress(Exception):
        proc.kill()
        proc.wait(timeout=10)
    # A failed compute_score leaves its lock held, and the scorer's __del__ takes that lock: use a fresh one.
    scorer.lock = threading.Lock()


def _spice(gts: dict, res: dict) -> tuple[float, list[float]] | None:
    try:
        from pycocoevalcap.spice.spice import Spice

        score, scores = Spice().compute_score(gts, res)
        return float(score), [float(s["All"]["f"]) for s in scores]
    except Exception as e:  # needs Stanford CoreNLP models, downloaded on first use: fails offline
        print(f"evaluate: SPICE could not run ({type(e).__name__}: {e}); it is left out. SPICE needs Java and the "
              "Stanford CoreNLP 3.6.0 models, which pycocoevalcap downloads on first use (network needed once); "
              "the other metrics are unaffected", file=sys.stderr)
        return None


def score_captions(references: dict[int, list[str]], predictions: dict[int, str],
                   spice: bool = False, meteor: bool = True, overlap: bool = True) -> tuple[dict, list[dict]]:
    """Toolkit scores of `predictions` against `references`; (summary, per-image rows).

    Images with references but no prediction are counted in `missing_predictions` and left out.
    With `overlap`, METEOR's JVM scores on one core while BLEU, ROUGE-L and CIDEr are computed in
    Python on another (the numbers are the same; bench/evaluate_speed.py).
    """
    unknown = sorted(set(predictions) - set(references))
    if unknown:
        raise InputError(f"predictions for images without references: "
                         f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    ids = sorted(predictions)
    if not ids:
        raise InputError("no predictions to evaluate")
    require_java()
    with contextlib.redirect_stdout(io.StringIO()):   # the toolkit prints progress chatter
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
        res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in ids})
    with ThreadPoolExecutor(max_workers=1) as pool:
        met_future = pool.submit(_meteor, gts, res) if (meteor and overlap) else None
        with contextlib.redirect_stdout(io.StringIO()):
            bleu, bleu_per = Bleu(4).compute_score(gts, res)
        rouge, rouge_per = Rouge().compute_score(gts, res)
        cider, cider_per = Cider().compute_score(gts, res)
        met = met_future.result() if met_future is not None else (_meteor(gts, res) if meteor else None)
    summary = {"images": len(ids), **{f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}}
    per_image = [{"image_id": i, **{f"bleu_{n + 1}": float(bleu_per[n][k]) for n in range(4)},
                  "rouge_l": float(rouge_per[k]), "cider": float(cider_per[k])} for k, i in enumerate(ids)]
    if met is not None:
        summary["meteor"] = met[0]
        for row, s in zip(per_image, met[1]):
            row["meteor"] = s
    summary["rouge_l"], summary["cider"] = float(rouge), float(cider)
    if spice:
        sp = _spice(gts, res)
        if sp is not None:
            summary["spice"] = sp[0]
            for row, s in zip(per_image, sp[1]):
                row["spice"] = s
    missing = len(set(references) - set(predictions))
    if missing:
        summary["missing_predictions"] = missing
    return summary, per_image
