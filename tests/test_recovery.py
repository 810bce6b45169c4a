"""Every way a `dvc exp run` can end badly, then `caption restore`: back to the committed results, the
user's own changes kept. One workspace, in the order a user meets these states."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from dvc_project import create_project, project_env, run
from test_pipeline import TINY

pytestmark = pytest.mark.slow
CHECKPOINT = Path("data/train_state/checkpoint.pt")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = create_project(tmp_path_factory.mktemp("recovery"), TINY)
    run(["dvc", "repro"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "the committed run"], work)
    return work


@pytest.fixture
def user_changes(project):
    """A note of the user's own and an edit to a tracked file: restore must keep both."""
    readme = project / "README.md"
    original = readme.read_text()
    readme.write_text(original + "\nmy own note\n")
    (project / "NOTES.md").write_text("ideas\n")
    yield
    readme.write_text(original)
    (project / "NOTES.md").unlink()


def start_exp(project: Path, *sets: str, shell: str | None = None) -> subprocess.Popen:
    """`dvc exp run -S ...` in its own process group; `shell` is the $SHELL DVC runs stage commands with."""
    args = [a for s in sets for a in ("-S", s)]
    env = project_env(project) | ({"SHELL": shell} if shell else {})
    return subprocess.Popen(["dvc", "exp", "run", *args], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=terminal_signals)


def terminal_signals() -> None:
    """Ctrl-C as in a terminal: a test suite started in the background by a non-interactive shell inherits
    SIGINT ignored, and Python then keeps ignoring it in every process below."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def trainers_under(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(proc.pid).children(recursive=True) if "stages/train.py" in c.cmdline()]
    except psutil.Error:
        return []


def wait_for_new_checkpoint(project: Path, proc: subprocess.Popen) -> list[psutil.Process]:
    """Until the trainer under `proc` has written a checkpoint of its own (the file left by an earlier run
    does not count), so a signal sent next finds the trainer at work; returns the trainer processes."""
    path = project / CHECKPOINT
    before = path.stat().st_mtime if path.exists() else 0
    deadline = time.time() + 300
    while True:
        assert proc.poll() is None, f"the run ended before its first checkpoint:\n{proc.stdout.read()[-2000:]}"
        assert time.time() < deadline, "no checkpoint after 300 s"
        trainer = trainers_under(proc)
        started = max((t.create_time() for t in trainer), default=None)
        if started is not None and path.exists() and path.stat().st_mtime > max(before, started):
            return trainer
        time.sleep(0.3)


def restore_and_check(project: Path, expected=(" M README.md", "?? NOTES.md")) -> str:
    log = run([sys.executable, "-m", "captioning.cli", "restore"], project)
    status = run(["git", "status", "--porcelain"], project).splitlines()
    assert sorted(status) == list(expected), status
    assert run(["git", "symbolic-ref", "--short", "HEAD"], project).strip() in {"main", "master"}
    assert "up to date" in run(["dvc", "status"], project).lower()
    return log


def test_a_failed_run_with_a_bad_value(project, user_changes):
    failed = subprocess.run(["dvc", "exp", "run", "-S", "train.lr=abc"], cwd=project, env=project_env(project),
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "train.lr" in failed.stderr + failed.stdout
    assert not (project / "models").exists()    # DVC removed the stage's outputs before it ran
    restore_and_check(project)


def test_ctrl_c_during_train_says_where_it_stopped(project, user_changes):
    proc = start_exp(project, "train.epochs=300")
    wait_for_new_checkpoint(project, proc)
    os.killpg(proc.pid, signal.SIGINT)          # what Ctrl-C in the terminal sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "train: stopped; data/train_state/checkpoint.pt holds epoch" in out and "resumes from there" in out
    restore_and_check(project)


def test_killed_dvc_takes_its_trainer_with_it(project, user_changes):
    """With SHELL=/bin/sh (dash on Debian) a shell stays between dvc and the trainer after dvc dies."""
    proc = start_exp(project, "train.epochs=300", shell="/bin/sh")
    trainer = wait_for_new_checkpoint(project, proc)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(trainer, timeout=30)
    assert not alive, "the trainer outlived the dvc process that started it"
    detached = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=project).returncode != 0
    assert detached, "expected DVC to leave HEAD detached (the state this test is about)"
    assert "back on branch" in restore_and_check(project)


def test_a_second_exp_run_cannot_record_the_first_model_under_its_params(project):
    """The second `dvc exp run` writes its -S value into params.yaml, then stops on DVC's lock; what DVC then
    does to params.yaml depends on timing (it may put the first run's back, or the committed file). Either
    way the first run's model, trained at 0.006, must never be recorded under another rate."""
    first = start_exp(project, "train.lr=0.006", "train.epochs=8")
    wait_for_new_checkpoint(project, first)
    second = subprocess.run(["dvc", "exp", "run", "-S", "train.lr=0.007"], cwd=project, env=project_env(project),
                            capture_output=True, text=True)
    assert second.returncode != 0, "the second run should stop on the workspace lock"
    out, _ = first.communicate(timeout=600)
    recorded = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]["params"]["params.yaml"]
    if "params.yaml changed while train ran: " in out:
        assert first.returncode != 0 and "train.lr 0.006 -> " in out, out[-2000:]
        assert recorded["train"]["lr"] == 0.002, "the stage's outputs were recorded anyway"   # the committed rate
    else:   # params.yaml was back at 0.006 when train ended: then 0.006 is the right record
        assert recorded["train"]["lr"] == 0.006, out[-2000:]
    # DVC's stash of the workspace can be lost in this collision, so no user edits are in play here
    restore_and_check(project, expected=[])
