"""download stage: make the raw dataset available under data/raw.

synthetic: generate the offline default dataset (COCO layout) into --out.
coco2014/coco2017: use `data.root` when it already holds the COCO layout, else download there.
flickr8k/karpathy/folder: read the local copy at `data.root`.
In every case --out/source.json records the source, its root and a manifest with checksums, so DVC
sees a change of the local copy.
"""
from pathlib import Path

import typer

from captioning.data.sources import prepare_source
from captioning.params import load_params
from captioning.stage import stage_command, typer_app

app = typer_app(__doc__)


@app.command()
@stage_command
def main(out: Path = typer.Option(Path("data/raw"), help="folder for the raw dataset (or its manifest)"),
         params: Path = typer.Option(Path("params.yaml"), help="parameters file (sections `data`, `seed`)")):
    """Generate, download or index the dataset named by `data.source`."""
    p = load_params(params)
    info = prepare_source(p.data, p.seed, out)
    print(f"download: {info['source']} at {info['root']} ({len(info.get('manifest', {}))} files in the manifest)")


if __name__ == "__main__":
    app()
