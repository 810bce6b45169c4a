import pytest

from captioning.io import InputError
from captioning.text.tokenizer import tokenize
from captioning.text.vocabulary import Vocabulary, build_vocabulary, coverage

CAPTIONS = ["A red circle.", "a red square", "A Blue circle, on white!", "a red circle", "zebra"]


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Dog's toy, on the 2nd floor!") == ["a", "dog's", "toy", "on", "the", "2nd", "floor"]


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
