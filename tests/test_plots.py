import numpy as np
import pytest
from PIL import Image

from captioning.plots.attention import plot_attention
from captioning.plots.curves import plot_training_curves
from captioning.plots.examples import plot_examples
from captioning.plots.scores import plot_score_distributions
from captioning.plots.words import plot_word_frequencies


def opens(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    return True


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(path)
    return path


def test_curves_with_data_and_without(tmp_path):
    (tmp_path / "steps.tsv").write_text("step\tepoch\tloss\tperplexity\n"
                                        + "".join(f"{i}\t{1 + i // 10}\t{3 - i / 20}\t{np.exp(3 - i / 20)}\n"
                                                  for i in range(1, 31)))
    (tmp_path / "epochs.tsv").write_text("epoch\ttrain_loss\tval_loss\tval_perplexity\tval_bleu_4\tval_cider\n"
                                         "1\t2.5\t2.4\t11\t0.1\t0.2\n"
                                         "2\t2\t2.1\t8\t0.2\t0.4\n"
                                         "3\t1.6\t1.9\t6.7\t0.25\t0.5\n")
    plot_training_curves(tmp_path / "steps.tsv", tmp_path / "epochs.tsv", tmp_path / "a.png")
    plot_training_curves(tmp_path / "none.tsv", tmp_path / "none.tsv", tmp_path / "b.png")
    assert opens(tmp_path / "a.png") and opens(tmp_path / "b.png")


def test_scores_words_examples_attention(tmp_path, image):
    (tmp_path / "per.csv").write_text("image_id,bleu_4,meteor,rouge_l,cider\n"
                                      + "".join(f"{i},{i / 10},{i / 20},{i / 15},{i / 5}\n" for i in range(10)))
    plot_score_distributions(tmp_path / "per.csv", tmp_path / "s.png")
    plot_score_distributions(tmp_path / "missing.csv", tmp_path / "s0.png")
    plot_word_frequencies(["a red circle", "a blue square"], ["a red circle on white"], tmp_path / "w.png")
    plot_word_frequencies([], [], tmp_path / "w0.png")
    plot_examples([{"image_path": image, "generated": "a green picture", "references": ["green", "all green"]}] * 3,
                  tmp_path / "e.png")
    plot_examples([], tmp_path / "e0.png")
    alphas = np.random.default_rng(0).dirichlet(np.ones(12), size=3)
    plot_attention(image, ["a", "green", "picture"], alphas, (3, 4), tmp_path / "att.png")
    for name in ("s", "s0", "w", "w0", "e", "e0", "att"):
        assert opens(tmp_path / f"{name}.png")
