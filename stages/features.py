"""features stage: pooled vectors and spatial grids of every resized image, from the chosen CNN."""
from pathlib import Path

import typer

from captioning.features.extract import extract_split
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)
SPLITS = ("train", "val", "test")


@app.command()
@stage_command
def main(images: Path = typer.Option(Path("data/images"), help="folder with <split>/<image_id>.jpg from resize"),
         out: Path = typer.Option(Path("data/features"), help="feature store: <split>/pooled.npy, grid.npy, ids.json"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (section `features`)")):
    ("Extract `features.encoder` (ImageNet weights offline for efficientnet_lite*) in batches, "
     "float16, memory-mapped.")
    p = load_params(params).features
    for split in SPLITS:
        ids = sorted(int(f.stem) for f in (images / split).glob("*.jpg"))
        info = extract_split(images / split, ids, out / split, p.encoder, p.weights, p.batch_size,
                             mirror=p.mirror_train and split == "train")
        print(f"features: {split}: {len(ids)} images {info}")


if __name__ == "__main__":
    app()
