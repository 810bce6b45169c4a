"""evaluate stage: COCO caption metrics (pycocoevalcap) of the predictions, per image too, and text statistics."""
from pathlib import Path

import typer

from captioning.evaluate.run import run_evaluate
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(predictions: Path = typer.Option(Path("data/predictions.json"), help="COCO results JSON from decode"),
         subset: Path = typer.Option(Path("data/subset"), help="folder with <split>.json references and train.json"),
         vocab: Path = typer.Option(Path("data/vocab.json"), help="vocabulary (for the share of it used)"),
         out: Path = typer.Option(Path("metrics/metrics.json"), help="BLEU-1..4, METEOR, ROUGE-L, CIDEr (0..1 scale)"),
         per_image: Path = typer.Option(Path("metrics/per_image.csv"), help="per-image scores"),
         text_stats: Path = typer.Option(Path("metrics/text.json"), help="statistics of the generated text"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file "
                                                               "(sections `evaluate`, `decode.split`)")):
    """Score with the COCO toolkit (PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr-D; SPICE when `evaluate.spice`)."""
    p = load_params(params)
    summary = run_evaluate(predictions, subset, p.decode.split, vocab, p.evaluate.spice, out, per_image, text_stats)
    print("evaluate: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))


if __name__ == "__main__":
    app()
