import numpy as np
import pytest
from PIL import Image

from captioning.plots.attention import plot_attention
from captioning.plots.curves import plot_training_curves
from captioning.plots.examples import plot_examples
from captioning.plots.scores import plot_score_distributions
from captioning.plots.words import plot_word_frequencies
from captioning.train.driver import TrainResult
from captioning.train.live_log import LiveLog


def opens(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    return True


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(path)
    return path


def test_curves_from_the_training_log_and_without_one(tmp_path):
    log = LiveLog(tmp_path / "live")
    log.begin(TrainResult({}, 0, 0))
    for step in range(1, 31):
        log.step([step, 1 + (step - 1) // 10, "loss", 3 - step / 20])
        if step % 10 == 0:
            log.epoch({"epoch": step // 10, "step": step, "val_loss": 2.6 - step / 40, "val_perplexity": 10.0,
                       "val_bleu_4": step / 100, "val_cider": step / 50, "lr": 0.001})
    plot_training_curves(tmp_path / "live", tmp_path / "a.png")
    plot_training_curves(tmp_path / "none", tmp_path / "b.png")
    assert opens(tmp_path / "a.png") and opens(tmp_path / "b.png")
    assert (tmp_path / "a.png").stat().st_size > (tmp_path / "b.png").stat().st_size   # curves drawn, not blanks


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


def test_score_density_is_scipys_gaussian_kde_without_scipy():
    stats = pytest.importorskip("scipy.stats")
    from captioning.plots.scores import gaussian_density

    values = np.random.default_rng(0).random(200)
    xs = np.linspace(0, 1, 50)
    np.testing.assert_allclose(gaussian_density(values, xs), stats.gaussian_kde(values)(xs), rtol=1e-10)


def save_small_model(folder, decoder_name):
    import torch

    from captioning.models.artifact import CaptionModel, save_model
    from captioning.models.decoders import DecoderConfig, build_decoder
    from captioning.text.vocabulary import build_vocabulary

    torch.manual_seed(0)
    vocab, _ = build_vocabulary(["a green picture", "a red square"], 1, 6)
    decoder = build_decoder(decoder_name, DecoderConfig(len(vocab), 8, 8, 8, 16, 1, 0.0))
    encoder = {"name": "efficientnet_lite0", "weights": "none", "pooled_dim": 8, "grid_shape": [3, 4, 8]}
    save_model(CaptionModel(decoder_name, decoder, vocab, encoder, {}), folder)
    return folder


def test_attention_figure_from_a_model_folder_and_a_panel_for_a_decoder_without_attention(tmp_path, image):
    """The plot stage opens the model folder itself: an attention decoder's maps over the example image, or a
    small panel saying the decoder has none."""
    import json

    from captioning.features.store import GRID, IDS, META, POOLED
    from captioning.plots.run import plot_attention_examples

    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    np.save(features / POOLED, rng.normal(size=(1, 8)).astype(np.float16))
    np.save(features / GRID, rng.normal(size=(1, 12, 8)).astype(np.float16))
    (features / IDS).write_text("[7]")
    (features / META).write_text(json.dumps({"encoder": "efficientnet_lite0", "weights": "none", "pooled_dim": 8,
                                             "grid_shape": [3, 4, 8]}))
    image.rename(tmp_path / "7.jpg")
    for name in ("soft_attention", "show_tell"):
        plot_attention_examples(save_small_model(tmp_path / name, name), features, tmp_path, [7],
                                tmp_path / f"{name}.png")
        assert opens(tmp_path / f"{name}.png")
    assert (tmp_path / "soft_attention.png").stat().st_size > 3 * (tmp_path / "show_tell.png").stat().st_size
