"""The evaluate code against a direct pycocoevalcap call, on real COCO val2017 captions."""
import json

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captioning.evaluate import coco_metrics
from captioning.evaluate.coco_metrics import score_captions
from captioning.evaluate.run import run_evaluate
from captioning.io import InputError


@pytest.fixture(scope="module")
def real_captions(tmp_path_factory):
    from conftest import SHARED_DATA

    path = SHARED_DATA / "coco" / "annotations" / "captions_val2017.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    coco = json.loads(path.read_text())
    ids = sorted(im["id"] for im in coco["images"])[:60]
    refs = {i: [] for i in ids}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        if ann["image_id"] in refs:
            refs[ann["image_id"]].append(ann["caption"])
    # Deterministic candidates: every third image gets its own first caption (held out of its references),
    # the others the first caption of the next image.
    preds, gts = {}, {}
    for k, i in enumerate(ids):
        if k % 3 == 0:
            preds[i], gts[i] = refs[i][0], refs[i][1:]
        else:
            preds[i], gts[i] = refs[ids[(k + 1) % len(ids)]][0], refs[i]
    return gts, preds


def direct(gts, preds):
    tok = PTBTokenizer()
    g = tok.tokenize({i: [{"caption": c} for c in gts[i]] for i in preds})
    r = tok.tokenize({i: [{"caption": preds[i]}] for i in preds})
    bleu, _ = Bleu(4).compute_score(g, r)
    meteor = Meteor()
    out = {f"bleu_{n + 1}": bleu[n] for n in range(4)}
    out["meteor"], _ = meteor.compute_score(g, r)
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()
    out["rouge_l"], _ = Rouge().compute_score(g, r)
    out["cider"], _ = Cider().compute_score(g, r)
    return out


def test_scores_equal_a_direct_toolkit_call(real_captions):
    gts, preds = real_captions
    summary, per_image = score_captions(gts, preds)
    expected = direct(gts, preds)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=1e-12), key
    assert summary["images"] == 60 and len(per_image) == 60
    own = [row["cider"] for k, row in enumerate(per_image) if k % 3 == 0]
    other = [row["cider"] for k, row in enumerate(per_image) if k % 3 != 0]
    assert sum(own) / len(own) > 3 * sum(other) / len(other)   # a human caption of the image beats another image's


def test_evaluate_stage_writes_the_same_numbers(real_captions, tmp_path):
    gts, preds = real_captions
    subset = tmp_path / "subset"
    subset.mkdir()
    anns = [{"id": n, "image_id": i, "caption": c} for n, (i, c) in enumerate((i, c) for i in gts for c in gts[i])]
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in gts], "annotations": anns}
    for split in ("test", "train"):
        (subset / f"{split}.json").write_text(json.dumps(coco))
    (tmp_path / "preds.json").write_text(json.dumps([{"image_id": i, "caption": c} for i, c in preds.items()]))
    (tmp_path / "vocab.json").write_text(json.dumps({"words": ["<pad>", "<start>", "<end>", "<unk>", "a"],
                                                      "threshold": 1, "max_length": 20}))
    summary = run_evaluate(tmp_path / "preds.json", subset, "test", tmp_path / "vocab.json", False,
                           tmp_path / "m.json", tmp_path / "per.csv", tmp_path / "t.json")
    written = json.loads((tmp_path / "m.json").read_text())
    assert written == summary and written["split"] == "test"
    assert written["cider"] == pytest.approx(direct(gts, preds)["cider"], abs=1e-12)
    assert len((tmp_path / "per.csv").read_text().splitlines()) == 61
    assert json.loads((tmp_path / "t.json").read_text())["identical_to_training_caption"] > 0.3


def test_missing_java_says_how_to_install(monkeypatch):
    monkeypatch.setattr(coco_metrics.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get install default-jre-headless"):
        score_captions({1: ["a dog"]}, {1: "a dog"})


def test_meteor_failure_keeps_the_other_metrics(monkeypatch, capsys):
    class BrokenMeteor:
        def __init__(self):
            raise BrokenPipeError("[Errno 32] Broken pipe")
    monkeypatch.setattr("pycocoevalcap.meteor.meteor.Meteor", BrokenMeteor)
    summary, _ = score_captions({1: ["a dog runs on the grass", "a brown dog"]}, {1: "a dog on the grass"})
    assert "meteor" not in summary and summary["bleu_1"] > 0 and "cider" in summary
    assert "METEOR could not run" in capsys.readouterr().err


def test_predictions_for_unknown_images_are_refused():
    with pytest.raises(InputError, match=r"\[2\]"):
        score_captions({1: ["a dog"]}, {1: "a dog", 2: "a cat"})


def test_no_meteor_jvm_left_running(real_captions):
    import psutil

    gts, preds = real_captions
    score_captions(gts, preds)
    alive = [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in alive if "java" in p.name()]


def test_spice_runs_or_says_why_not(capsys):
    refs = {1: ["a dog runs on the grass", "a brown dog running"], 2: ["a red car on a street", "a parked car"]}
    summary, _ = score_captions(refs, {1: "a dog running on grass", 2: "a red car"}, spice=True)
    if "spice" not in summary:                       # offline: its models cannot be fetched
        assert "SPICE could not run" in capsys.readouterr().err
    assert summary["cider"] > 0 and "bleu_4" in summary
