"""vocab stage: build the word vocabulary from the training captions."""
from pathlib import Path

import typer

from captioning.params import load_params
from captioning.stage import stage_command, typer_app
from captioning.text.build import run_vocab

app = typer_app(__doc__)


@app.command()
@stage_command
def main(subset: Path = typer.Option(Path("data/subset"), help="folder with train.json and val.json (COCO captions)"),
         out: Path = typer.Option(Path("data/vocab.json"), help="vocabulary JSON to write"),
         metrics: Path = typer.Option(Path("metrics/vocab.json"), help="size and coverage metrics to write"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (section `vocab`)")):
    """Keep words seen at least `vocab.threshold` times; report size and train/val coverage."""
    p = load_params(params).vocab
    stats = run_vocab(subset / "train.json", subset / "val.json", p.threshold, p.max_length, out, metrics)
    print(f"vocab: {stats['size']} words (threshold {p.threshold}), train coverage {stats['train_coverage']:.3f}, "
          f"val coverage {stats['val_coverage']:.3f}")


if __name__ == "__main__":
    app()
