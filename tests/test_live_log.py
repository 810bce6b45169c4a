"""The training log through DVCLive: what a resumed run writes, and what the train stage records."""
import json

from captioning.plots.curves import read_metric
from captioning.train.driver import TrainResult
from captioning.train.live_log import LiveLog


def _epoch(epoch: int, step: int) -> dict:
    return {"epoch": epoch, "step": step, "val_loss": 3.0 - epoch, "val_perplexity": 20.0 - epoch,
            "val_bleu_4": 0.1 * epoch, "val_cider": 0.2 * epoch, "lr": 0.001}


def test_a_resumed_run_continues_its_steps_with_none_repeated_or_missing(tmp_path):
    live = tmp_path / "dvclive"
    killed = LiveLog(live)                       # a run killed at step 8, its last checkpoint at step 5
    killed.begin(TrainResult({}, 0, 0))
    rows = [[step, 1 + (step > 4), "loss", 5.0 - step / 10] for step in range(1, 9)]
    for row in rows:
        killed.step(row)
        if row[0] == 4:
            killed.epoch(_epoch(1, 4))
    checkpoint = TrainResult({}, 1, 1, step_log=rows[:5], epoch_log=[_epoch(1, 4)])

    resumed = LiveLog(live)
    resumed.begin(checkpoint)
    for step in range(6, 11):                    # steps 6.. run again, then on to the end
        resumed.step([step, 2 + (step > 8), "reward" if step > 8 else "loss", 0.5])
    resumed.epoch(_epoch(2, 8))

    assert read_metric(live, "train/loss")["step"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert read_metric(live, "train/reward")["step"].tolist() == [9, 10]
    assert read_metric(live, "val/cider")["step"].tolist() == [4, 8]
    assert read_metric(live, "epoch")["epoch"].tolist() == [1, 2]
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["epoch"] == 2 and summary["val"]["cider"] == 0.4 and summary["train"]["lr"] == 0.001
