"""resize stage: every subset image as an RGB JPEG of one size; bad images skipped, named and counted."""
from pathlib import Path

import typer

from captioning.data.coco import load_captions
from captioning.data.images import check_skips, resize_split
from captioning.data.sources import read_source
from captioning.io import atomic_write_json
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)
SPLITS = ("train", "val", "test")


@app.command()
@stage_command
def main(subset: Path = typer.Option(Path("data/subset"), help="folder with train/val/test.json from filter"),
         raw: Path = typer.Option(Path("data/raw"), help="output of the download stage (source.json)"),
         out: Path = typer.Option(Path("data/images"), help="folder for <split>/<image_id>.jpg and report.json"),
         metrics: Path = typer.Option(Path("metrics/resize.json"), help="counts written/skipped per split"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (section `resize`)")):
    """`resize.mode` squash (to size x size) or crop (shorter side, centre crop), on every core; fails when a
    split loses more than `resize.max_skipped` of its images, or all of them."""
    p = load_params(params).resize
    per_image = read_source(raw).get("images") == "per_image"
    reports = {}
    for s in SPLITS:
        images = load_captions(subset / f"{s}.json")["images"]
        fetched = None
        if per_image:  # COCO without the image zips: fetch just this subset's images into data.root
            from captioning.data.download import fetch_images
            fetched = fetch_images(images)
        reports[s] = resize_split(images, out / s, p.image_size, p.mode, p.workers)
        if fetched is not None:
            reports[s]["fetch"] = fetched
    atomic_write_json(out / "report.json", reports)
    counts = {s: {k: v for k, v in r.items() if isinstance(v, (int, float))} for s, r in reports.items()}
    atomic_write_json(metrics, counts)
    print("resize: " + ", ".join(f"{s} {c}" for s, c in counts.items()))
    check_skips(reports, p.max_skipped, out / "report.json")   # after the report: the error points to it


if __name__ == "__main__":
    app()
