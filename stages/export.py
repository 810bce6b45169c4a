"""export stage: the trained model with the decoding settings and scores it was evaluated with (the DVC
artifact `captioner`: `dvc artifacts get REPO captioner`, then `caption predict --model captioner`), with its
model card (README.md)."""
from pathlib import Path

import typer

from captioning.models.export import export_model
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(model: Path = typer.Option(Path("models"), help="model folder from train"),
         metrics: Path = typer.Option(Path("metrics/metrics.json"), help="its scores, from evaluate"),
         out: Path = typer.Option(Path("artifacts/captioner"), help="the folder to write"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (`decode`; for the model card "
                                                               "`seed`, `data`, `subset`, `vocab`, `train`)")):
    """Copy the model folder and add decoding.json and README.md (the model card)."""
    decoding = export_model(model, metrics, out, load_params(params))
    print(f"export: {out} (beam {decoding['beam_size']}, length_penalty {decoding['length_penalty']})")


if __name__ == "__main__":
    app()
