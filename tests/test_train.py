import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_toy import train_toy

from captioning.models.decoders import DECODERS
from captioning.train.checkpoint import CHECKPOINT, load_checkpoint
from captioning.train.validate import greedy_captions

HERE = Path(__file__).parent


def assert_learned_the_colours(decoder, result, vocab, val):
    losses = [e["train_loss"] for e in result.epoch_log]
    assert losses[-1] < losses[0] * 0.7, losses
    decoder.eval()
    feats = val.features(torch.arange(len(val.ids)).numpy(), "cpu", False, decoder.needs_grid)
    captions = greedy_captions(decoder, [(val.ids, feats)], vocab, 10)
    right = sum(any(c.split()[-2:] == r.split()[-2:] for r in val.references[i]) for i, c in captions.items() if c)
    assert right >= 0.75 * len(val.ids), captions   # the colour word comes from the image features


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_every_decoder_learns_the_toy_task(tmp_path, name):
    decoder, result, vocab, val = train_toy(tmp_path, name, epochs=6)
    assert_learned_the_colours(decoder, result, vocab, val)


def test_attention_decoder_learns_from_random_caption_batches_too(tmp_path, monkeypatch):
    """train.group_by_image=false: batches of captions from many images, not whole images."""
    import captioning.train.cross_entropy as cross_entropy

    def refuse(*args, **kwargs):
        raise AssertionError("image-grouped batches used although train.group_by_image is false")
    monkeypatch.setattr(cross_entropy, "image_grouped_batches", refuse)
    decoder, result, vocab, val = train_toy(tmp_path, "soft_attention", epochs=6, group_by_image=False)
    assert_learned_the_colours(decoder, result, vocab, val)


def test_checkpoint_loads_without_pickle(tmp_path):
    train_toy(tmp_path, epochs=1)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and "optimizer" in state


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    clean = tmp_path / "clean.safetensors"
    subprocess.run([sys.executable, str(HERE / "train_toy.py"), str(tmp_path / "s1"), str(clean)], check=True, env=env)

    state, resumed = tmp_path / "s2", tmp_path / "resumed.safetensors"
    proc = subprocess.Popen([sys.executable, str(HERE / "train_toy.py"), str(state), str(resumed), "show_tell", "0.05"],
                            env=env)
    deadline = time.time() + 120
    while not (state / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not resumed.exists()
    mid = torch.load(state / CHECKPOINT, weights_only=True)
    assert (mid["epoch"], mid["batch"]) != (3, 0), "the kill came too late to test resuming"

    subprocess.run([sys.executable, str(HERE / "train_toy.py"), str(state), str(resumed)], check=True, env=env)
    a, b = load_file(clean), load_file(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _Exploit:
    """Unpickling this would run a shell command; a safe loader must refuse it."""
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_checkpoint_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"run_key": {"run": "toy"}, "payload": _Exploit()}, tmp_path / CHECKPOINT)
    assert load_checkpoint(tmp_path, {"run": "toy"}) is None        # refused, training starts from scratch
    assert not (tmp_path / "pwned").exists()


def test_ddp_on_two_gloo_processes_matches_one_process(tmp_path):
    """Same global batch of 16: 2 ranks x 8 captions give the losses and weights of 1 process x 16.
    In float32: bfloat16 rounding would differ with how the batch is split."""
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}.safetensors"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               str(HERE / "train_toy.py"), str(tmp_path / f"state{n}"), str(out), "show_tell", "0", "0", "fp32"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[n] = (json.loads(Path(str(out) + ".losses.json").read_text()), load_file(out))
    (losses1, weights1), (losses2, weights2) = outs[1], outs[2]
    assert len(losses1) == len(losses2) > 10
    assert losses1 == pytest.approx(losses2, rel=1e-4)           # stated tolerance: 1e-4 relative
    for k in weights1:
        assert torch.allclose(weights1[k], weights2[k], atol=1e-4), k
