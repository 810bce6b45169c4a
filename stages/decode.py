"""decode stage: caption every image of `decode.split` with the trained model."""
from pathlib import Path

import typer

from captioning.decode.run import decode_split
from captioning.io import atomic_write_json
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(model: Path = typer.Option(Path("models"), help="model artifact folder"),
         features: Path = typer.Option(Path("data/features"), help="feature store; the split comes from decode.split"),
         images: Path = typer.Option(Path("data/images"), help="resized images (<split>/<id>.jpg), "
                                                               "read by models with a fine-tuned encoder"),
         out: Path = typer.Option(Path("data/predictions.json"), help="COCO results JSON to write"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (section `decode`)")):
    """Greedy (beam_size 1) or beam search decoding, batched, to [{"image_id", "caption"}]."""
    p = load_params(params)
    preds = decode_split(model, features / p.decode.split, p.decode.beam_size, p.decode.max_length,
                         p.decode.length_penalty, p.decode.batch_size, images_dir=images / p.decode.split)
    atomic_write_json(out, preds, indent=1)
    print(f"decode: {len(preds)} captions of {p.decode.split} (beam {p.decode.beam_size}) -> {out}")


if __name__ == "__main__":
    app()
