"""The caption tokenizer against the COCO toolkit's own PTB tokenizer (Java), on every caption of the shared data.

`pytest -s tests/test_tokenizer.py` prints the agreement per data set.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from captioning.text.tokenizer import TOOLKIT_PUNCTUATION, _prepare, _treebank_tokens, detokenize, tokenize

# CI clones the repository next to a copy of shared/.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_SETS = ("flickr8k", "coco_val2017", "coco_mini")

# Checked with the Java tokenizer; the shortcut and round-trip tests use them too.
EXAMPLES = {
    "A boy in a white t-shirt.": ["a", "boy", "in", "a", "white", "t-shirt"],
    "Don't touch the dog's ball": ["do", "n't", "touch", "the", "dog", "'s", "ball"],
    "The dog’s “toy” isn’t here…": ["the", "dog", "'s", "toy", "is", "n't", "here"],
    "A sign for Fort York Blvd. and a T.V.": ["a", "sign", "for", "fort", "york", "blvd.", "and", "a", "t.v."],
    "A dog (a puppy) runs on a 3/4 court at 5:54pm.":
        ["a", "dog", "-lrb-", "a", "puppy", "-rrb-", "runs", "on", "a", "3/4", "court", "at", "5:54", "pm"],
    "An old- fashioned train, #41 on the track..": ["an", "old", "fashioned", "train", "#", "41", "on", "the", "track"],
    "The letter K. A dog": ["the", "letter", "k", "a", "dog"],
    "Un café près de la fenêtre.": ["un", "café", "près", "de", "la", "fenêtre"],
    "Собака бежит по траве.": ["собака", "бежит", "по", "траве"],
}


def _flickr8k() -> list[str]:
    lines = (SHARED_DATA / "flickr8k" / "Flickr8k_text" / "Flickr8k.token.txt").read_text(encoding="utf-8")
    return [line.split("\t", 1)[1] for line in lines.splitlines() if line.strip()]   # name.jpg#N<TAB>caption


def _coco(*paths: Path) -> list[str]:
    return [a["caption"] for p in paths for a in json.loads(p.read_text(encoding="utf-8"))["annotations"]]


@lru_cache(maxsize=None)
def real_captions(name: str) -> tuple[str, ...]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (CI clones the repository next to shared/)")
    if name == "flickr8k":
        return tuple(_flickr8k())
    if name == "coco_val2017":
        return tuple(_coco(SHARED_DATA / "coco" / "annotations" / "captions_val2017.json"))
    return tuple(_coco(*sorted((SHARED_DATA / "coco_mini" / "annotations").glob("*.json"))))


def toolkit_tokens(captions: tuple[str, ...]) -> list[list[str]]:
    """pycocoevalcap's PTBTokenizer on all captions in one batch: one Java process."""
    if shutil.which("java") is None:
        pytest.skip("Java is not on PATH; the COCO toolkit's PTB tokenizer needs it")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with contextlib.redirect_stdout(io.StringIO()):
        out = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [out[i][0].split() for i in range(len(captions))]       # the metrics split on whitespace


def test_punctuation_is_the_toolkits_list():
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    assert TOOLKIT_PUNCTUATION == frozenset(PUNCTUATIONS)


@pytest.mark.parametrize("caption", EXAMPLES)
def test_examples(caption):
    assert tokenize(caption) == EXAMPLES[caption]


@pytest.mark.parametrize("name", DATA_SETS)
def test_agrees_with_the_toolkits_ptb_tokenizer(name):
    """Every caption of the data set, ours against the toolkit's; today all agree, so any difference fails."""
    captions = real_captions(name)
    theirs = toolkit_tokens(captions)
    differing = [(c, ours, t) for c, t in zip(captions, theirs) if (ours := tokenize(c)) != t]
    same = len(captions) - len(differing)
    print(f"\n{name}: {same} / {len(captions)} captions tokenized identically ({100 * same / len(captions):.2f}%)")
    examples = "\n".join(f"  {c!r}\n    ours    {o}\n    toolkit {t}" for c, o, t in differing[:20])
    assert not differing, f"{len(differing)} captions of {name} tokenized differently:\n{examples}"


def test_shortcut_gives_the_full_paths_tokens():
    """tokenize() skips NLTK for plain captions; on every real caption that must not change a token."""
    captions = [c for name in DATA_SETS for c in real_captions(name)] + list(EXAMPLES)
    differing = [c for c in captions if tokenize(c) != _treebank_tokens(_prepare(c))]
    assert not differing, differing[:20]


@pytest.mark.parametrize("tokens, text", [
    (["do", "n't", "touch", "the", "dog", "'s", "t-shirt"], "don't touch the dog's t-shirt"),
    (["a", "dog", "-lrb-", "a", "puppy", "-rrb-", "on", "st.", "louis"], "a dog (a puppy) on st. louis"),
    (["the", "letter", "p."], "the letter p. ."),        # a final `p.` needs something after it to keep its period
    (["собака", "у", "café"], "собака у café"),
    ([], ""),
])
def test_detokenize(tokens, text):
    assert detokenize(tokens) == text
    assert tokenize(text) == tokens


def test_detokenized_captions_tokenize_to_the_same_tokens():
    captions = [c for name in DATA_SETS for c in real_captions(name)[::10]] + list(EXAMPLES)
    assert len(captions) > 5000
    differing = [(c, tokenize(detokenize(tokenize(c)))) for c in captions
                 if tokenize(detokenize(tokenize(c))) != tokenize(c)]
    assert not differing, differing[:20]


def test_needs_no_downloaded_nltk_data(tmp_path):
    """A fresh process whose NLTK data path is an empty folder (NLTK_DATA and HOME too)."""
    code = ("import sys, nltk\n"
            "nltk.data.path[:] = [sys.argv[1]]\n"
            "from captioning.text.tokenizer import detokenize, tokenize\n"
            "tokens = tokenize(\"A man's T-shirt, don't (sic.) Mr. Café..\")\n"
            "print(tokens, detokenize(tokens))\n")
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "'t-shirt'" in done.stdout and "a man's t-shirt don't (sic) mr. café" in done.stdout
