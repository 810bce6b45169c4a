import json

import pytest

from captioning.data.subset import build_subsets
from captioning.io import InputError
from captioning.text.tokenizer import tokenize
from captioning.text.vocabulary import Vocabulary, build_vocabulary, coverage

CAPTIONS = ["A red circle.", "a red square", "A Blue circle, on white!", "a red circle", "zebra"]


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Dog's toy, on the 2nd floor!") == ["a", "dog", "'s", "toy", "on", "the", "2nd", "floor"]


def test_threshold_keeps_frequent_words_and_specials_first():
    vocab, counts = build_vocabulary(CAPTIONS, threshold=2, max_length=5)
    assert vocab.words[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    assert set(vocab.words[4:]) == {"a", "red", "circle"}
    assert counts["zebra"] == 1


def test_encode_truncates_and_maps_unknown_words():
    vocab, _ = build_vocabulary(CAPTIONS, threshold=2, max_length=3)
    ids = vocab.encode("a red zebra circle circle")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id and len(ids) == 5
    assert ids[3] == vocab.unk_id
    assert vocab.decode(ids[1:]) == "a red"  # specials, <unk> included, never reach a caption


def test_round_trip_and_digest_check(tmp_path):
    vocab, _ = build_vocabulary(CAPTIONS, threshold=1, max_length=20)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
    text = (tmp_path / "v.json").read_text().replace('"zebra"', '"horse"')
    (tmp_path / "v.json").write_text(text)
    with pytest.raises(InputError, match="digest"):
        Vocabulary.load(tmp_path / "v.json")


def test_coverage_counts_known_tokens():
    vocab, _ = build_vocabulary(CAPTIONS, threshold=2, max_length=20)
    assert coverage(vocab, ["a red zebra"]) == pytest.approx(2 / 3)


def test_decode_gives_text_for_people_that_encodes_back():
    vocab, _ = build_vocabulary(["Don't touch the dog's red t-shirt (please)"], threshold=1, max_length=20)
    ids = vocab.encode("don't touch the dog's red t-shirt (please)")
    assert vocab.decode(ids[1:]) == "don't touch the dog's red t-shirt (please)"
    assert vocab.encode(vocab.decode(ids[1:])) == ids


def test_accented_and_cyrillic_captions_reach_the_vocabulary(tmp_path):
    """A `folder` data set in two scripts, through the filter stage's logic and the vocabulary."""
    from PIL import Image

    root = tmp_path / "folder"
    root.mkdir()
    french, russian = "Un café près de la fenêtre.", "Собака бежит по траве."
    images, annotations = [], []
    for i in range(1, 5):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(root / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg"})
        annotations += [{"id": 2 * i - 1, "image_id": i, "caption": french},
                        {"id": 2 * i, "image_id": i, "caption": russian}]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations},
                                                   ensure_ascii=False), encoding="utf-8")
    splits, _ = build_subsets("folder", root, {"train": 4, "val": None, "test": None}, seed=0)
    captions = [a["caption"] for a in splits["train"]["annotations"]]
    vocab, _ = build_vocabulary(captions, threshold=4, max_length=20)
    for word in ("café", "près", "fenêtre", "собака", "бежит", "по", "траве"):
        assert word in vocab
    vocab.save(tmp_path / "vocab.json")
    vocab = Vocabulary.load(tmp_path / "vocab.json")
    for caption, text in ((french, "un café près de la fenêtre"), (russian, "собака бежит по траве")):
        ids = vocab.encode(caption)
        assert vocab.unk_id not in ids
        assert vocab.decode(ids[1:]) == text


def _split_file(tmp_path, name: str, captions: list[str]):
    from captioning.data.coco import write_captions

    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(len(captions))]
    anns = [{"id": i, "image_id": i, "caption": c} for i, c in enumerate(captions)]
    write_captions(tmp_path / name, images, anns)
    return tmp_path / name


def test_a_threshold_no_word_reaches_is_refused_with_the_numbers(tmp_path):
    from captioning.text.build import run_vocab

    train = _split_file(tmp_path, "train.json", CAPTIONS)
    with pytest.raises(InputError, match=r"vocab.threshold = 100000: no word .* the most frequent 4 times"):
        run_vocab(train, train, 100000, 20, tmp_path / "vocab.json", tmp_path / "m.json")
    assert not (tmp_path / "vocab.json").exists()


def test_captions_that_tokenize_to_nothing_are_refused(tmp_path):
    from captioning.text.build import run_vocab

    train = _split_file(tmp_path, "train.json", ["...", "!", " - "])
    with pytest.raises(InputError, match="every training caption tokenizes to nothing"):
        run_vocab(train, train, 1, 20, tmp_path / "vocab.json", tmp_path / "m.json")


def test_low_coverage_is_warned(tmp_path, capsys):
    from captioning.text.build import run_vocab

    train = _split_file(tmp_path, "train.json", ["a red circle", "one blue square", "two green stars", "a dog"])
    stats = run_vocab(train, train, 2, 20, tmp_path / "vocab.json", tmp_path / "m.json")
    assert stats["train_coverage"] < 0.9 and "warning: only" in capsys.readouterr().out
