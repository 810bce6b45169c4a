"""Word frequency of generated captions against the reference captions."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from captioning.plots.figure import no_data, plt, save_png
from captioning.text.tokenizer import tokenize


def plot_word_frequencies(generated: Sequence[str], references: Sequence[str], out_png: str | Path,
                          top: int = 25) -> None:
    gen = Counter(w for c in generated for w in tokenize(c))
    ref = Counter(w for c in references for w in tokenize(c))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    if not gen and not ref:
        no_data(ax)
        save_png(fig, out_png)
        return
    words = [w for w, _ in (ref + gen).most_common(top)]
    gen_total, ref_total = max(sum(gen.values()), 1), max(sum(ref.values()), 1)
    x = np.arange(len(words))
    ax.bar(x - 0.2, [ref[w] / ref_total for w in words], 0.4, label="reference captions", color="lightsteelblue")
    ax.bar(x + 0.2, [gen[w] / gen_total for w in words], 0.4, label="generated captions", color="navy")
    ax.set_xticks(x, words, rotation=60, ha="right")
    ax.set_ylabel("share of all words")
    ax.set_title(f"the {len(words)} most frequent words: generated vs reference "
                 f"({len(gen)} distinct generated words, {len(ref)} in the references)")
    ax.legend()
    save_png(fig, out_png)
