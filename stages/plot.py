"""plot stage: training curves, score distributions, word frequencies, example captions, attention."""
from pathlib import Path

import typer

from captioning.params import load_params
from captioning.plots.run import run_plots
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(predictions: Path = typer.Option(Path("data/predictions.json"), help="COCO results JSON from decode"),
         subset: Path = typer.Option(Path("data/subset"), help="folder with <split>.json references"),
         images: Path = typer.Option(Path("data/images"), help="resized images, <split>/<id>.jpg"),
         train_logs: Path = typer.Option(Path("plots/dvclive"), help="the train stage's DVCLive folder"),
         per_image: Path = typer.Option(Path("metrics/per_image.csv"), help="per-image scores from evaluate"),
         model: Path = typer.Option(Path("models"), help="model artifact (for attention maps)"),
         features: Path = typer.Option(Path("data/features"), help="feature store (for attention maps)"),
         out: Path = typer.Option(Path("plots"), help="folder for the PNG figures"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (sections `plot`, `decode.split`)")):
    """Write loss.png, scores.png, words.png, examples.png and attention.png."""
    p = load_params(params)
    split = p.decode.split
    written = run_plots(predictions, subset / f"{split}.json", images / split, train_logs, per_image, model,
                        features / split, p.plot.examples, p.seed, out)
    print("plot: " + ", ".join(str(w) for w in written))


if __name__ == "__main__":
    app()
