"""The evaluate stage against the COCO caption toolkit's own evaluator, on real COCO val2017 captions.

`pycocoevalcap.eval.COCOEvalCap(COCO(subset), coco.loadRes(predictions)).evaluate()` is what the toolkit's
README and the evaluation server run; the project's numbers must be the same (same tokenizer and scorers).
"""
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from captioning.data.coco import load_captions, load_results, open_coco, references_of, write_captions
from captioning.evaluate.coco_metrics import _close_meteor
from captioning.evaluate.run import load_predictions, run_evaluate
from captioning.io import InputError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CAPTIONS = SHARED_DATA / "coco" / "annotations" / "captions_val2017.json"
IMAGES = 50
# The toolkit's names for the project's metric keys.
TOOLKIT = {"bleu_1": "Bleu_1", "bleu_2": "Bleu_2", "bleu_3": "Bleu_3", "bleu_4": "Bleu_4", "meteor": "METEOR",
           "rouge_l": "ROUGE_L", "cider": "CIDEr"}


def predicted(references: dict[int, list[str]]) -> dict[int, str]:
    """Deterministic candidates of mixed quality: every third image gets the first half of its own first
    caption (still among its references), the others the first caption of the next image."""
    ids = sorted(references)
    preds = {}
    for k, i in enumerate(ids):
        words = references[i][0].split()
        preds[i] = " ".join(words[:len(words) // 2]) if k % 3 == 0 else references[ids[(k + 1) % len(ids)]][0]
    return preds


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 50-image test split written by the project's write_captions, and a COCO results file for it."""
    if not CAPTIONS.exists():
        pytest.skip(f"{CAPTIONS} is absent (the real COCO val2017 captions; see shared/data/README.md)")
    coco = load_captions(CAPTIONS)
    images = sorted(coco["images"], key=lambda im: im["id"])[:IMAGES]
    chosen = {im["id"] for im in images}
    annotations = sorted((a for a in coco["annotations"] if a["image_id"] in chosen), key=lambda a: a["id"])
    folder = tmp_path_factory.mktemp("coco_eval")
    subset = folder / "subset"
    for split in ("test", "train"):              # train.json: the text statistics compare against it
        write_captions(subset / f"{split}.json", images, annotations, {"split": split})
    references = {i: [a["caption"] for a in annotations if a["image_id"] == i] for i in sorted(chosen)}
    predictions = folder / "predictions.json"
    predictions.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in predicted(references).items()]))
    (folder / "vocab.json").write_text(json.dumps({"words": ["<pad>", "<start>", "<end>", "<unk>", "a"],
                                                   "threshold": 1, "max_length": 20}))
    return folder, subset, predictions


def toolkit_scores(subset_json: Path, predictions_json: Path, monkeypatch) -> dict:
    """COCOEvalCap's scores, as its README runs it; SPICE stubbed, METEOR's JVM ended afterwards."""
    import pycocoevalcap.eval as cap_eval

    class NoSpice:
        """COCOEvalCap.evaluate always runs SPICE, whose first use downloads Stanford CoreNLP (network);
        the project leaves SPICE off by default, so a stub scorer stands in for it."""

        def method(self):
            return "SPICE"

        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

    meteors = []

    class ClosedMeteor(cap_eval.Meteor):
        def __init__(self):
            super().__init__()
            meteors.append(self)

    monkeypatch.setattr(cap_eval, "Spice", NoSpice)
    monkeypatch.setattr(cap_eval, "Meteor", ClosedMeteor)       # only to end its JVM, as the project does
    gt = COCO(str(subset_json))
    evaluator = cap_eval.COCOEvalCap(gt, gt.loadRes(str(predictions_json)))
    try:
        evaluator.evaluate()
    finally:
        for meteor in meteors:
            _close_meteor(meteor)
    return {key: float(evaluator.eval[name]) for key, name in TOOLKIT.items()}


def test_coco_eval_cap_reproduces_the_evaluate_stage(case, tmp_path, monkeypatch):
    folder, subset, predictions = case
    run_evaluate(predictions, subset, "test", folder / "vocab.json", False,
                 tmp_path / "metrics.json", tmp_path / "per_image.csv", tmp_path / "text.json")
    project = json.loads((tmp_path / "metrics.json").read_text())
    toolkit = toolkit_scores(subset / "test.json", predictions, monkeypatch)
    print("\nmetric    COCOEvalCap         project             difference")
    for key in TOOLKIT:
        print(f"{key:8}  {toolkit[key]:.15f}  {project[key]:.15f}  {toolkit[key] - project[key]:.1e}")
    assert project["images"] == IMAGES and "missing_predictions" not in project
    assert 0.05 < project["bleu_4"] < 0.9 and 0.1 < project["cider"] < 3     # neither trivial nor perfect
    for key in TOOLKIT:
        assert project[key] == pytest.approx(toolkit[key], rel=0, abs=1e-9), key


@pytest.fixture
def small(tmp_path):
    images = [{"id": 7, "file_name": "7.jpg"}, {"id": 391895, "file_name": "COCO_val2014_000000391895.jpg"}]
    annotations = [{"id": 1, "image_id": 391895, "caption": "a man on a bike"},
                   {"id": 2, "image_id": 7, "caption": "a dog"}, {"id": 3, "image_id": 391895, "caption": "a cyclist"}]
    write_captions(tmp_path / "test.json", images, annotations)
    return tmp_path / "test.json"


def test_subset_files_open_with_pycocotools(small):
    coco = open_coco(small)
    assert isinstance(coco, COCO) and sorted(coco.getImgIds()) == [7, 391895]
    assert references_of(coco) == {391895: ["a man on a bike", "a cyclist"], 7: ["a dog"]}
    assert references_of(load_captions(small)) == references_of(coco)          # callers holding the dict
    assert COCO(str(small)).imgToAnns.keys() == coco.imgToAnns.keys()          # the toolkit reads it the same


def test_results_load_through_load_res(small, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"image_id": 7, "caption": "a puppy"}]))
    results = load_results(open_coco(small), path, small)
    assert results.getImgIds() == [7] and results.imgToAnns[7][0]["caption"] == "a puppy"
    assert load_predictions(path) == {7: "a puppy"}


@pytest.mark.parametrize("rows, message", [
    ({"image_id": 7}, r"p.json: expected COCO results format"),
    ([{"image_id": 7, "caption": "a"}, {"image_id": "391895", "caption": "b"}], r"p.json: \[1\] needs an integer"),
    ([{"image_id": 7, "caption": None}], r"p.json: \[0\] needs an integer `image_id` and a string `caption`"),
    ([{"image_id": 7, "caption": "a"}, {"image_id": 7, "caption": "b"}], r"\[1\] repeats image_id 7 of \[0\]"),
    ([{"image_id": 7, "caption": "a"}, {"image_id": 8, "caption": "b"}], r"1 results name images that are not in "
                                                                         r".*test.json, e.g. \[1\] image_id 8"),
    ([], r"p.json: no results"),
])
def test_malformed_results_name_the_file_and_entry(small, tmp_path, rows, message):
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with pytest.raises(InputError, match=message):
        load_results(open_coco(small), tmp_path / "p.json", small)


def test_malformed_captions_files_name_the_file_and_entry(tmp_path):
    path = tmp_path / "x.json"
    images, first = [{"id": 1, "file_name": "a.jpg"}], {"id": 1, "image_id": 1, "caption": "a"}
    path.write_text(json.dumps({"images": images, "annotations": [first, {"image_id": 1}]}))
    with pytest.raises(InputError, match=r"x.json: annotations\[1\] needs an integer `image_id` and a `caption`"):
        open_coco(path)
    path.write_text(json.dumps({"images": images, "annotations": [first, {"image_id": 1, "caption": "b"}]}))
    with pytest.raises(InputError, match=r"x.json: annotations\[1\] needs an `id` to be opened with pycocotools"):
        open_coco(path)
