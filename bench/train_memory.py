"""Train-stage memory as the training set grows 10x: features memory-mapped (the pipeline's way) against
features loaded into RAM, same decoder, one epoch each, in fresh processes.

python bench/train_memory.py [--images 2000] [--factor 10]
Features are random, shaped like EfficientNet-Lite0's (1280 pooled, 7x7x1280 grid, float16 on disk:
125 KB per image); 5 captions per image; a small soft-attention decoder so an epoch is quick.
Reported: peak anonymous memory (what the process itself holds; sampled every 20 ms) and peak RSS
(VmHWM, which also counts the memory map's file pages: page cache the kernel can drop under pressure).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

GRID, CHANNELS, CAPTIONS, WORDS = 49, 1280, 5, 300


def write_features(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    grid = np.lib.format.open_memmap(folder / "grid.npy", mode="w+", dtype=np.float16, shape=(n, GRID, CHANNELS))
    for s in range(0, n, 500):
        grid[s:s + 500] = rng.standard_normal((min(500, n - s), GRID, CHANNELS), dtype=np.float32)
    grid.flush()
    np.save(folder / "pooled.npy", np.asarray(grid[:, 0, :]))
    del grid


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def child(folder: Path, mmap: bool) -> None:
    """One epoch of training in this process; prints a JSON line with the memory figures."""
    import torch

    from captioning.models.decoders import DecoderConfig, build_decoder
    from captioning.params import TrainParams
    from captioning.text.vocabulary import build_vocabulary
    from captioning.train.captions import CaptionPairs
    from captioning.train.loop import train_decoder
    from captioning.train.split_data import SplitData

    peak_anon = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status("RssAnon"))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    mode = "r" if mmap else None
    grid, pooled = np.load(folder / "grid.npy", mmap_mode=mode), np.load(folder / "pooled.npy", mmap_mode=mode)
    n = grid.shape[0]
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(WORDS)]
    captions = [" ".join(rng.choice(words, rng.integers(6, 14))) for _ in range(n * CAPTIONS)]
    vocab, _ = build_vocabulary(captions, 1, 16)
    tokens = np.zeros((len(captions), 18), dtype=np.int64)
    lengths = np.zeros(len(captions), dtype=np.int64)
    for k, c in enumerate(captions):
        seq = vocab.encode(c)
        tokens[k, :len(seq)], lengths[k] = seq, len(seq)
    ids = list(range(n))
    pairs = CaptionPairs(np.repeat(np.arange(n), CAPTIONS), tokens, lengths)
    refs = {i: captions[i * CAPTIONS:(i + 1) * CAPTIONS] for i in ids}
    train = SplitData(pooled, grid, ids, pairs, refs)
    val_rows = np.arange(100)
    val = SplitData(pooled[:100], grid[:100], ids[:100],
                    CaptionPairs(np.repeat(val_rows, CAPTIONS), tokens[:500], lengths[:500]),
                    {i: refs[i] for i in ids[:100]})
    p = TrainParams(decoder="soft_attention", epochs=1, batch_size=64, embed_dim=32, hidden_dim=64,
                    checkpoint_every=10**9)
    decoder = build_decoder("soft_attention", DecoderConfig(len(vocab), CHANNELS, CHANNELS, 32, 64, 1, 0.5))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as state:
        train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), Path(state), "memory-bench")
    stop.set()
    print(json.dumps({"peak_anon_mb": peak_anon[0], "peak_rss_mb": _status("VmHWM"),
                      "seconds": time.perf_counter() - start}))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1] == "mmap")
        return
    print(describe())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.images, args.images * args.factor):
            folder = Path(tmp) / str(n)
            folder.mkdir()
            write_features(folder, n)
            for way in ("mmap", "ram"):
                done = subprocess.run([sys.executable, __file__, "--child", str(folder), way],
                                      capture_output=True, text=True, check=True)
                rows.append((n, way, json.loads(done.stdout.strip().splitlines()[-1])))
    print("\n| training images | features | peak anonymous MB | peak RSS MB | epoch s |\n|---|---|---|---|---|")
    for n, way, r in rows:
        label = "memory-mapped (the pipeline)" if way == "mmap" else "loaded into RAM"
        print(f"| {n} | {label} | {r['peak_anon_mb']} | {r['peak_rss_mb']} | {r['seconds']:.0f} |")
    anon = {(n, way): r["peak_anon_mb"] for n, way, r in rows}
    small, large = args.images, args.images * args.factor
    print(f"ratio: {args.factor}x the images -> peak anonymous memory x{anon[large, 'mmap'] / anon[small, 'mmap']:.2f} "
          f"memory-mapped, x{anon[large, 'ram'] / anon[small, 'ram']:.2f} loaded into RAM")


if __name__ == "__main__":
    main()
