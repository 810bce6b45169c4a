"""The guards every stage runs under: its params re-read at the end, and no orphan after its parent dies."""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from captioning.io import InputError
from captioning.stage import ParamsWatch, declared_params

ROOT = Path(__file__).resolve().parents[1]


def write_params(path: Path, lr: float, beam: int = 3) -> None:
    path.write_text(yaml.safe_dump({"seed": 1, "train": {"lr": lr, "epochs": 2}, "decode": {"beam_size": beam}}))


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"train": {"cmd": "python stages/train.py", "params": ["seed", "train"]}}}))
    write_params(tmp_path / "params.yaml", 0.006)
    return tmp_path


def test_the_projects_stages_declare_their_params():
    assert declared_params("train", ROOT / "dvc.yaml")[:2] == ["seed", "train"]
    assert "decode.split" in declared_params("evaluate", ROOT / "dvc.yaml")
    assert declared_params("no_such_stage", ROOT / "dvc.yaml") == []


def test_a_stage_whose_params_changed_under_it_fails_naming_them(project):
    watch = ParamsWatch("train", project / "params.yaml", project / "dvc.yaml")
    write_params(project / "params.yaml", 0.007)
    with pytest.raises(InputError) as e:
        watch.check()
    assert "params.yaml changed while train ran: train.lr 0.006 -> 0.007" in str(e.value)
    assert "--queue" in str(e.value)


def test_keys_the_stage_does_not_read_may_change(project):
    watch = ParamsWatch("train", project / "params.yaml", project / "dvc.yaml")
    write_params(project / "params.yaml", 0.006, beam=5)
    watch.check()


@pytest.mark.parametrize("shell", [None, "/bin/sh"])
def test_a_stage_outlives_no_parent(tmp_path, shell):
    """A `dvc`-like parent starts a stage-like child, directly or through `$SHELL -c` as DVC does (dash, the
    /bin/sh of Debian, stays alive as the child's parent), and is killed: the child stops within seconds."""
    (tmp_path / "child.py").write_text(textwrap.dedent("""
        import time
        from captioning.stage import stop_on_parent_exit
        stop_on_parent_exit()
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            print("stopped", flush=True)
    """))
    command = [sys.executable, str(tmp_path / "child.py")]
    if shell:
        command = [shell, "-c", " ".join(command)]
    parent = (f"import os, subprocess, sys, time\n"
              f"os.environ['DVC_STAGE'] = 'train'\n"
              f"subprocess.Popen({command!r}, stdout=open({str(tmp_path / 'out')!r}, 'w'))\n"
              "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.time() + 30
    while not stage_like(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    kids = stage_like(proc.pid)
    assert kids, "the child did not start"
    time.sleep(1)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(kids, timeout=15)
    assert not alive, "the child kept running after its parent died"
    assert (tmp_path / "out").read_text().strip() == "stopped"


def stage_like(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children(recursive=True) if "child.py" in " ".join(c.cmdline())]


def test_a_stages_forked_workers_die_on_sigterm_at_once(tmp_path):
    """`Pool.terminate` SIGTERMs workers that may be blocked on the pool's queue, where a Python handler
    never runs: the stage then waited forever. Its forked workers must have the default disposition."""
    script = textwrap.dedent("""
        import multiprocessing, signal, sys, time
        from captioning.stage import stop_on_parent_exit
        stop_on_parent_exit()
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL     # the stage itself: handled
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(pool.map(signal.getsignal, [signal.SIGTERM] * 2) == [signal.SIG_DFL] * 2, flush=True)
            started = time.time()
        print(time.time() - started < 10, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
