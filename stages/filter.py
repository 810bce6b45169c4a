"""filter stage: seeded train/val/test subsets of the raw dataset, as COCO captions JSON per split."""
from pathlib import Path

import typer

from captioning.data.coco import write_captions
from captioning.data.sources import read_source
from captioning.data.subset import build_subsets
from captioning.io import atomic_write_json
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(raw: Path = typer.Option(Path("data/raw"), help="output of the download stage (source.json)"),
         out: Path = typer.Option(Path("data/subset"), help="folder for train.json, val.json, test.json"),
         metrics: Path = typer.Option(Path("metrics/data.json"), help="counts per split (images, captions, skipped)"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (sections `subset`, `seed`)")):
    """Sample `subset.train/val/test` images with `seed`; val and test never share an image."""
    p = load_params(params)
    source = read_source(raw)
    splits, stats = build_subsets(source["source"], Path(source["root"]), p.subset.model_dump(), p.seed,
                                  require_files=source.get("images") != "per_image",
                                  caption_column=source.get("caption_column"))
    for split, coco in splits.items():
        write_captions(out / f"{split}.json", coco["images"], coco["annotations"], coco.get("info"))
    atomic_write_json(metrics, stats)
    print("filter: " + ", ".join(f"{s} {len(c['images'])} images" for s, c in splits.items()))


if __name__ == "__main__":
    app()
