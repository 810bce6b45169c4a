"""train stage: train the captioning decoder on cached image features."""
import sys
from pathlib import Path

import typer

from captioning.params import load_params
from captioning.stage import stage_command, typer_app
from captioning.train.checkpoint import resume_hint
from captioning.train.run import run_train

app = typer_app(__doc__)


@app.command()
@stage_command
def main(features: Path = typer.Option(Path("data/features"), help="feature store with train/ and val/"),
         subset: Path = typer.Option(Path("data/subset"), help="folder with train.json and val.json (captions)"),
         images: Path = typer.Option(Path("data/images"), help="resized images (<split>/<id>.jpg), "
                                                               "read when train.finetune_encoder"),
         vocab: Path = typer.Option(Path("data/vocab.json"), help="vocabulary from the vocab stage"),
         out: Path = typer.Option(Path("models"), help="model artifact folder to write"),
         state: Path = typer.Option(Path("data/train_state"), help="resume checkpoints (kept between runs)"),
         metrics: Path = typer.Option(Path("metrics/train.json"), help="training summary metrics"),
         live: Path = typer.Option(Path("plots/dvclive"), help="DVCLive folder: metrics per step and epoch"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (sections `train`, `seed`)")):
    """Teacher-forced training with validation by greedy decoding; resumes from `--state` when interrupted."""
    try:
        summary = run_train(load_params(params), features, subset, vocab, out, state, metrics, live, images)
    except KeyboardInterrupt:
        print(resume_hint(state), file=sys.stderr)
        raise
    if summary:   # empty on the other ranks under torchrun: rank 0 reports
        print(f"train: done, best epoch {summary['best_epoch']}, val CIDEr {summary['best_val_cider']}, "
              f"{summary['train_seconds']} s")


if __name__ == "__main__":
    app()
