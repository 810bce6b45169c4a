"""The `caption` command: caption your own photos with a trained model."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from captioning.io import InputError, atomic_write_json
from captioning.stage import typer_app

app = typer_app("Caption images with a model trained by this pipeline (`models/` after `dvc repro`).")


@app.callback()
def main() -> None:
    """Image captioning: `caption predict IMAGE_OR_FOLDER... --model models/`."""


@app.command()
def restore(project: Path = typer.Option(Path("."), help="project root (where dvc.yaml is)")):
    """Back to the last committed results after a failed, interrupted or killed `dvc exp run`.

    Restores params.yaml, dvc.lock, metrics/, plots/ and the DVC outputs; keeps every other change.
    """
    from captioning.restore import restore_workspace

    try:
        for line in restore_workspace(project.resolve()):
            typer.echo(f"restore: {line}")
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def predict(images: List[Path] = typer.Argument(..., help="image files or folders (searched recursively)"),
            model: Path = typer.Option(Path("models"), help="model folder (models/ or one from `dvc artifacts get`)"),
            out: Optional[Path] = typer.Option(None, help="write COCO results JSON [{image_id, caption}] here "
                                                          "(ids from COCO file names; others get file_name)"),
            json_output: bool = typer.Option(False, "--json", help="print the results as JSON on stdout"),
            beam_size: Optional[int] = typer.Option(None, min=1, help="beam width (1 = greedy); default: as the "
                                                                      "model was evaluated (decoding.json), else 3"),
            max_length: Optional[int] = typer.Option(None, min=1, help="longest caption, in words (default 20)"),
            length_penalty: Optional[float] = typer.Option(None, min=0, help="beam scores divided by length**this "
                                                                             "(default: as evaluated, else 0)"),
            attention_maps: Optional[Path] = typer.Option(None, help="folder for one attention figure per image "
                                                                     "(attention decoders only)"),
            device: str = typer.Option("auto", help="auto | cpu | cuda | mps")):
    """Print a caption for every image (any size or format); unreadable images are reported and skipped."""
    from captioning.predict import Captioner, find_images

    try:
        paths = find_images(images)
        captioner = Captioner(model, device)
        if attention_maps and not captioner.has_attention:
            raise InputError(f"--attention-maps: decoder {captioner.decoder_name!r} has no attention over the "
                             "image; train soft_attention, bahdanau_gated or top_down")
        results = captioner.caption(paths, beam_size, max_length, length_penalty, progress=True)
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps([{"path": str(r.path), "caption": r.caption, "error": r.error} for r in results],
                              indent=1))
    else:
        for r in results:
            typer.echo(f"{r.path}\t{r.caption}" if r.error is None else f"{r.path}\t(skipped: {r.error})")
    if attention_maps:
        _write_attention_maps(results, tuple(captioner.spec.grid_hw), attention_maps)
    if out:
        _write_results(results, out)
    skipped = sum(r.error is not None for r in results)
    if skipped:
        typer.echo(f"{skipped} of {len(results)} images skipped", err=True)


def _write_attention_maps(results: list, grid_hw: tuple[int, int], folder: Path) -> None:
    from captioning.plots.attention import plot_attention

    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.attention is not None:
            plot_attention(r.path, r.words, r.attention, grid_hw, folder / f"{r.path.stem}.png")
    typer.echo(f"attention maps: {folder}/", err=True)


def _write_results(results: list, out: Path) -> None:
    from captioning.predict import coco_results

    rows = coco_results(results)
    atomic_write_json(out, rows)
    unnamed = sum("image_id" not in row for row in rows)
    if unnamed:
        typer.echo(f"{out}: {unnamed} of {len(rows)} rows have a file_name but no image_id (not a COCO file name "
                   "such as 000000391895.jpg or COCO_val2014_000000391895.jpg); COCO.loadRes and the evaluation "
                   "server need integer image_ids", err=True)


if __name__ == "__main__":
    sys.exit(app())
