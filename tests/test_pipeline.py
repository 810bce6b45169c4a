"""One real `dvc repro` of a tiny configuration, in a fresh git+DVC copy of the project."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from dvc_project import create_project, project_env, run

from captioning.features.store import GRID, IDS, META, POOLED, FeatureStore

pytestmark = pytest.mark.slow
METRIC_KEYS = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"}
TINY = {
    "data": {"synthetic": {"train": 48, "val": 24, "image_size": 96}},
    "subset": {"train": 40, "val": 10, "test": 10},
    "resize": {"image_size": 96},
    "vocab": {"threshold": 1},
    "features": {"batch_size": 16},
    "train": {"epochs": 1, "batch_size": 16, "embed_dim": 32, "hidden_dim": 32},
    "plot": {"examples": 4},
}


def stages_run(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([a-z]+)'", log))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = create_project(tmp_path_factory.mktemp("project"), TINY)
    log = run(["dvc", "repro"], work)
    (work / "repro.log").write_text(log)
    return work


def test_repro_runs_every_stage_and_writes_metrics(project):
    log = (project / "repro.log").read_text()
    assert stages_run(log) == {"download", "filter", "resize", "vocab", "features", "train", "decode", "evaluate",
                               "plot", "export"}
    metrics = json.loads((project / "metrics" / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["split"] == "test" and metrics["images"] == 10
    for png in ("loss", "scores", "words", "examples"):
        assert (project / "plots" / f"{png}.png").stat().st_size > 1000
    assert (project / "models" / "model.safetensors").exists()
    trained = json.loads((project / "metrics" / "train.json").read_text())
    assert trained["precision"] in {"bf16", "fp32"} and trained["processor"] and trained["cpu_threads"] >= 1


def test_nothing_to_do_after_repro(project):
    out = run(["dvc", "status"], project)
    assert "up to date" in out.lower(), out


def lock_md5(project: Path, stage: str, out: str) -> str:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants. They are frozen first (SIGSTOP) until no new one appears,
    so none can start a child between the snapshot and the kill (on a loaded machine that child would
    survive, keep DVC's lock and write on)."""
    root, frozen = psutil.Process(pid), {}
    while True:
        try:
            current = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            current = []
        new = [p for p in current if p.pid not in frozen]
        if not new:
            break
        for p in new:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGSTOP)
            frozen[p.pid] = p
    for p in frozen.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(list(frozen.values()), timeout=30)


def writing_a_temporary(folder: Path) -> bool:
    """Whether a hidden temporary exists under `folder`; os.walk skips folders that vanish while it looks,
    as the stage's atomic renames make them do."""
    return any(name.startswith(".") for _, dirs, files in os.walk(folder) for name in dirs + files)


def test_stage_killed_mid_write_leaves_nothing_partial_and_rerun_matches(project):
    clean = lock_md5(project, "features", "data/features/train")
    env = project_env(project)
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", "features"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    features = project / "data" / "features"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:   # kill once the stage is writing a temporary
            if writing_a_temporary(features):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the stage finished before it could be killed"
    finally:
        # DVC runs the command in its own process group: kill the whole tree, as the OOM killer or a power
        # cut would. Also when the wait failed, so a live `dvc` never holds the lock for the next test.
        kill_tree(proc.pid)
        proc.wait()
    for f in features.rglob("*") if features.exists() else []:
        # whatever is left is either a complete file or an unrenamed temporary, never a partial real name
        assert f.is_dir() or f.name.startswith(".") or f.name in {POOLED, GRID, IDS, META}
    for split in features.iterdir() if features.exists() else []:
        if (split / META).exists():                          # meta is written last: the split is whole
            assert len(FeatureStore(split).ids) > 0
    status = run(["dvc", "status", "features"], project)
    assert "modified" in status or "deleted" in status, status   # DVC sees the damage
    run(["dvc", "repro"], project)                             # reruns it (or restores it from DVC's cache)
    assert not [f for f in features.rglob(".*")], "temporaries left behind"
    assert "up to date" in run(["dvc", "status"], project).lower()   # the workspace matches dvc.lock ...
    assert lock_md5(project, "features", "data/features/train") == clean    # ... which matches the clean run


def train_from_empty_state(project: Path, out: Path) -> bytes:
    """The train stage's command with a fresh state folder: what a run from scratch gives."""
    run([sys.executable, "stages/train.py", "--state", str(out / "state"), "--out", str(out / "models"),
         "--metrics", str(out / "train.json"), "--live", str(out / "live")], project)
    return (out / "models" / "model.safetensors").read_bytes()


def md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


def test_training_from_scratch_twice_gives_a_bit_identical_model_folder(project, tmp_path):
    """The whole `models` output, config.json included (no timings in it): DVC's hash is the same too."""
    model = (project / "models" / "model.safetensors").read_bytes()
    assert md5(train_from_empty_state(project, tmp_path)) == md5(model)
    for file in (project / "models").iterdir():
        assert (tmp_path / "models" / file.name).read_bytes() == file.read_bytes(), file.name


def test_changed_training_code_starts_afresh(project):
    commit_all(project, "before the code change")
    before = (project / "models" / "model.safetensors").read_bytes()
    loop = project / "src" / "captioning" / "train" / "loop.py"
    original = loop.read_text()
    loop.write_text(original + "\n# a change to the training code\n")
    try:
        log = run(["dvc", "exp", "run"], project)
    finally:
        loop.write_text(original)
    assert "train" in stages_run(log), log[-2000:]
    assert re.search(r"changed: [^)]*code", log) and "resuming" not in log, log[-3000:]
    # a comment changes nothing the model computes: the fresh run gives the same bytes
    assert (project / "models" / "model.safetensors").read_bytes() == before
    run(["dvc", "exp", "run"], project)       # the original code again (train reruns, same model)


def test_changed_features_retrain_from_scratch_never_resume_a_finished_run(project, tmp_path):
    """After a finished run, experiments that change only the features (resize.image_size) each train from
    scratch: their models differ, and each equals a run from an empty state."""
    commit_all(project, "before the resize experiments")
    models = []
    for size in (80, 64):
        log = run(["dvc", "exp", "run", "-S", f"resize.image_size={size}"], project)
        assert {"resize", "features", "train"} <= stages_run(log), log[-2000:]
        assert "resuming" not in log and re.search(r"changed: [^)]*features", log), log[-3000:]
        model = (project / "models" / "model.safetensors").read_bytes()
        assert md5(model) == md5(train_from_empty_state(project, tmp_path / str(size)))
        models.append(md5(model))
    assert models[0] != models[1]
    run(["git", "checkout", "--", "params.yaml"], project)
    run(["dvc", "repro"], project)               # back to the committed configuration for the tests below


def test_exp_run_reruns_only_downstream_of_train(project):
    commit_all(project, "repro")
    log = run(["dvc", "exp", "run", "-S", "train.epochs=2"], project)
    assert stages_run(log) == {"train", "decode", "evaluate", "plot", "export"}, log[-2000:]
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    assert "bleu_4" in shown
    printed = run(["dvc", "plots", "diff", "HEAD", "--json"], project)              # DVCLive's curves of both
    diff = json.JSONDecoder().raw_decode(printed[printed.index("{"):])[0]
    values = diff["data"]["plots/dvclive/plots/metrics/train/loss.tsv"][0]["content"]["data"]["values"]
    assert {row["rev"] for row in values} == {"HEAD", "workspace"}


def test_finetune_encoder_trains_end_to_end_and_decodes_through_its_own_encoder(project):
    """train.finetune_encoder: the encoder's weights change, travel in the artifact, and decode and
    `caption predict` compute features with them (not with the cached ImageNet features)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from captioning.models.encoders import build_encoder

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "before fine-tuning", "--allow-empty"], project)
    log = run(["dvc", "exp", "run", "-S", "train.finetune_encoder=true", "-S", "train.encoder_lr=0.001"], project)
    assert stages_run(log) == {"train", "decode", "evaluate", "plot", "export"}, log[-2000:]
    config = json.loads((project / "models" / "config.json").read_text())
    assert config["encoder"]["finetuned"] is True
    weights = load_file(str(project / "models" / "model.safetensors"))
    _, imagenet = build_encoder("efficientnet_lite0", "imagenet")
    start = {f"image_encoder.{k}": v for k, v in imagenet.state_dict().items()}
    trained = [k for k in start if k in weights and k.endswith("weight") and not torch.equal(weights[k], start[k])]
    assert len(trained) > 10, "the encoder's weights did not change"
    predictions = json.loads((project / "data" / "predictions.json").read_text())
    assert len(predictions) == 10 and all(p["caption"] for p in predictions)
    # caption predict uses the model's own encoder: its grid differs from the cached (ImageNet) one
    from PIL import Image

    from captioning.predict import Captioner

    captioner = Captioner(project / "models", "cpu")
    store = FeatureStore(project / "data" / "features" / "test")
    image = project / "data" / "images" / "test" / f"{store.ids[0]}.jpg"
    with Image.open(image) as im, torch.no_grad():
        pooled, _ = captioner.encoder(captioner.spec.preprocess(im)[None])
    cached = np.asarray(store.pooled[0], dtype=np.float32)
    assert not np.allclose(pooled[0].numpy(), cached, atol=1e-2)
    out = run([sys.executable, "-m", "captioning.cli", "predict", str(image), "--model", "models"], project)
    assert image.name in out


def commit_all(project: Path, message: str) -> None:
    run(["git", "checkout", "-q", "--", "params.yaml"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message, "--allow-empty"], project)


def exp_table(project: Path, columns: str) -> list[dict]:
    import csv
    import io

    shown = run(["dvc", "exp", "show", "--no-pager", "--csv", "--drop", ".*", "--keep", f"Experiment|State|{columns}"],
                project)
    return list(csv.DictReader(io.StringIO(shown[shown.index("Experiment"):])))


def test_exp_show_lists_a_running_experiments_training_metrics(project):
    """DVCLive rewrites plots/dvclive/metrics.json while training, so another shell sees the run's epochs."""
    commit_all(project, "before the live run")
    env = project_env(project)
    proc = subprocess.Popen(["dvc", "exp", "run", "-n", "live", "-S", "train.epochs=150"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    while proc.poll() is None:
        rows = [r for r in exp_table(project, "^epoch$") if r["Experiment"] == "live" and r["State"] == "Running"]
        seen += [int(r["epoch"]) for r in rows if r["epoch"].isdigit()]
        if any(0 < epoch < 150 for epoch in seen):
            break
        time.sleep(0.5)
    proc.wait(timeout=600)
    assert proc.returncode == 0
    assert any(0 < epoch < 150 for epoch in seen), f"no epoch of the running experiment shown: {seen}"


def test_two_queued_experiments_run_in_parallel_each_with_its_metrics(project):
    commit_all(project, "before the sweep")
    run(["dvc", "exp", "run", "--queue", "-S", "train.decoder=show_tell,gru_init", "-S", "train.epochs=2"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    deadline = time.time() + 600
    while time.time() < deadline and re.search(r"Queued|Running", run(["dvc", "queue", "status"], project)):
        time.sleep(2)
    status = run(["dvc", "queue", "status"], project)
    assert status.count("Success") >= 2 and "Failed" not in status, status
    rows = [r for r in exp_table(project, "^cider$|train.decoder|train.epochs") if r["train.epochs"] == "2"]
    assert {r["train.decoder"] for r in rows if r["cider"]} >= {"show_tell", "gru_init"}, rows


def test_a_fresh_clone_without_outputs_runs_one_experiment_after_another(project, tmp_path):
    """A clone with no remote and an empty cache: an experiment, the return to the committed files that the
    README gives after a failed run, then another experiment (the run cache must not restore an output
    that a later stage then reads inside a directory the clone never had)."""
    run(["dvc", "repro"], project)
    commit_all(project, "the committed run")
    clone = tmp_path / "fresh"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / ".dvc" / "cache").exists()
    run(["dvc", "exp", "run", "-n", "first", "-S", "train.epochs=2"], clone)
    run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots"], clone)
    log = run(["dvc", "exp", "run", "-n", "second", "-S", "train.embed_dim=16"], clone)
    assert "train" in stages_run(log), log[-2000:]
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], clone)
    assert "first" in shown and "second" in shown, shown


def test_a_clone_pulls_the_pipeline_from_the_remotes_and_captions_without_rerunning(project, tmp_path):
    """A local folder as DVC remote and a bare git repository as git remote: push, clone, pull, predict;
    the exported captioner through `dvc artifacts get`; an experiment through `dvc exp push/pull`."""
    run(["dvc", "repro"], project)
    run(["dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "store")], project)
    commit_all(project, "shared")
    run(["git", "tag", "-a", "captioner@v1.0.0", "-m", "Registering artifact captioner version v1.0.0"], project)
    run(["dvc", "push"], project)
    run(["git", "init", "-q", "--bare", "-b", "main", str(tmp_path / "origin.git")], project)
    run(["git", "remote", "add", "origin", str(tmp_path / "origin.git")], project)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main", "--tags"], project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone).lower()
    image = next((clone / "data" / "images" / "test").glob("*.jpg"))
    predict = [sys.executable, "-m", "captioning.cli", "predict", str(image), "--model"]
    assert image.name in run([*predict, "models"], clone)

    run(["dvc", "artifacts", "get", str(tmp_path / "origin.git"), "captioner", "-o", str(tmp_path / "got")], tmp_path)
    assert json.loads((tmp_path / "got" / "decoding.json").read_text())["beam_size"] == 3
    assert image.name in run([*predict, "got"], tmp_path)

    run(["dvc", "exp", "run", "-n", "shared-exp", "-S", "train.epochs=2"], project)
    run(["dvc", "exp", "push", "origin", "shared-exp"], project)
    run(["dvc", "exp", "pull", "origin", "shared-exp"], clone)
    assert "shared-exp" in run(["dvc", "exp", "list", "--all-commits"], clone)


def test_an_experiment_run_before_the_remote_existed_reaches_a_second_clone(project, tmp_path):
    """An experiment carries its commit's .dvc/config: one run before the remote was committed has none, and
    `dvc exp push` then shares its git refs but no data. The remote named in .dvc/config.local as well (the
    README's sharing recipe) carries the outputs, and the second clone applies the experiment whole."""
    if "store" in run(["dvc", "remote", "list"], project):
        run(["dvc", "remote", "remove", "store"], project)
    commit_all(project, "no remote yet")
    run(["dvc", "exp", "run", "-n", "early", "-S", "train.epochs=2", "-S", "train.embed_dim=24"], project)
    store, origin = tmp_path / "store", tmp_path / "share.git"
    run(["dvc", "remote", "add", "-d", "store", str(store)], project)
    run(["git", "commit", "-qm", "the remote", ".dvc/config"], project)
    run(["dvc", "remote", "add", "--local", "-d", "-f", "store", str(store)], project)
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run(["git", "push", "-q", str(origin), "HEAD:refs/heads/main"], project)
    pushed = run(["dvc", "exp", "push", str(origin), "early"], project)
    assert "uploaded" in pushed, pushed

    clone = tmp_path / "second"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "-d", "store", str(store)], clone)
    run(["dvc", "exp", "pull", "origin", "early"], clone)
    run(["dvc", "exp", "apply", "early"], clone)
    assert "up to date" in run(["dvc", "status"], clone).lower()
    assert yaml.safe_load((clone / "params.yaml").read_text())["train"]["embed_dim"] == 24
    image = next((clone / "data" / "images" / "test").glob("*.jpg"))
    assert image.name in run([sys.executable, "-m", "captioning.cli", "predict", str(image)], clone)
