import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def test_patience_under_ddp_stops_every_rank_at_rank_0s_epoch(tmp_path):
    """Rank 1's validation keeps improving, rank 0's does not: both stop where rank 0 decides (after epoch 4),
    where ranks deciding alone would leave one waiting for the other's gradients forever."""
    scores = [[1.0, 2.0, 1.5, 1.5, 1.5, 1.5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1", "TOY_SCORES_BY_RANK": json.dumps(scores)}
    out = tmp_path / "ddp.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "train_toy.py"), str(tmp_path / "state"), str(out), "show_tell", "0", "0", "fp32"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the ranks deadlocked: they disagreed on when to stop")
    assert proc.returncode == 0, log[-3000:]
    epochs = [json.loads(Path(f"{out}.rank{r}.epochs").read_text()) for r in (0, 1)]
    assert epochs == [[1, 2, 3, 4], [1, 2, 3, 4]]


def test_a_resumed_run_keeps_the_loss_scale_float16_training_had_reached(tmp_path):
    """The GradScaler's state is in the checkpoint: a resume does not restart float16 loss scaling from its
    initial scale (the CPU scaler stands in for the CUDA one; CUDA random states need a GPU to check)."""
    from torch import nn

    from captioning.train.driver import EpochDriver, Optimisation, Validation, make_scheduler

    class Steps:
        name, label, settings = "xe", "toy", ""

        def __init__(self, model, optimisation, epochs):
            self.model, self.optimisation, self.epochs, self.scales = model, optimisation, epochs, []

        def start(self, state):
            pass

        def prepare(self):
            pass

        def epoch_batches(self, epoch):
            return [np.arange(4)] * 3

        def step(self, batch, epoch):
            self.scales.append(self.optimisation.scaler.get_scale())
            loss = self.model(torch.ones(4, 2)).pow(2).mean()
            self.optimisation.update(loss)
            return {"loss": loss.item()}

        def validate(self, epoch):
            return Validation(-epoch, {"val_bleu_4": 0.0, "val_cider": 0.0})

    def run(epochs):
        torch.manual_seed(0)
        model = nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1)   # doubles every step
        optimisation = Optimisation(optimizer, make_scheduler(optimizer, "constant", 1), scaler, 0.0, model)
        phase = Steps(model, optimisation, epochs)
        EpochDriver(model, optimisation, tmp_path, {"run": "scale"}, None, 100).run([phase])
        return phase.scales

    assert run(1) == [2.0 ** 10, 2.0 ** 11, 2.0 ** 12]
    assert run(2) == [2.0 ** 13, 2.0 ** 14, 2.0 ** 15]       # resumed at epoch 2
