"""Shared start-up for the `stages/*.py` commands: load params, turn input errors into clear exits.

Three guards every stage gets from `stage_command`:
- a bad parameter or input stops it with a message, not a traceback;
- its own params (as dvc.yaml declares them) are read again when it ends: if another `dvc exp run`
  rewrote them meanwhile, the stage fails, so DVC never records its outputs under params they were not
  made with;
- Ctrl-C, `kill`, or the death of the `dvc` process that started it stops it with a word, instead of
  leaving an orphan that keeps writing outputs.
"""
from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import typer
import yaml

from captioning.io import InputError

PARENT_POLL_SECONDS = 1.0
INTERRUPTED = 130   # the shell's code for a command stopped by Ctrl-C


class StageInterrupted(KeyboardInterrupt):
    """Raised in the stage by SIGTERM or by its parent's death, handled like Ctrl-C."""


def stage_command(fn: Callable) -> Callable:
    """Wrap a stage's command with the three guards above."""
    stage = Path(inspect.getfile(fn)).stem

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        params = ParamsWatch(stage, Path(kwargs.get("params") or "params.yaml"))
        stop_on_parent_exit()
        try:
            result = fn(*args, **kwargs)
            params.check()
            return result
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print(f"{stage}: interrupted; DVC records no outputs of an interrupted stage", file=sys.stderr)
            raise typer.Exit(INTERRUPTED) from None
    return wrapper


def typer_app(help_text: str) -> typer.Typer:
    return typer.Typer(add_completion=False, help=help_text, pretty_exceptions_enable=False)


class ParamsWatch:
    """The values of a stage's declared params when it starts, compared again when it ends."""

    def __init__(self, stage: str, params_file: Path, dvc_yaml: Path = Path("dvc.yaml")):
        self.stage, self.params_file = stage, params_file
        self.keys = declared_params(stage, dvc_yaml)
        self.started = self.values()

    def values(self) -> dict[str, Any]:
        if not self.keys or not self.params_file.exists():
            return {}
        try:
            raw = yaml.safe_load(self.params_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            return {"(the file)": "not valid YAML"}
        found: dict[str, Any] = {}
        for key in self.keys:
            flatten(key, lookup(raw, key), found)
        return found

    def check(self) -> None:
        now = self.values()
        changed = [f"{k} {self.started.get(k, '(absent)')} -> {now.get(k, '(absent)')}"
                   for k in sorted(self.started.keys() | now.keys()) if self.started.get(k) != now.get(k)]
        if changed:
            raise InputError(
                f"{self.params_file} changed while {self.stage} ran: {'; '.join(changed)}. Is another "
                "`dvc exp run` using this workspace? Run one at a time here; sweeps: `dvc exp run --queue` "
                "or `--temp`. DVC has not recorded this stage's outputs")


def declared_params(stage: str, dvc_yaml: Path) -> list[str]:
    """The params keys dvc.yaml lists for `stage` (none when the stage runs outside a DVC project)."""
    if not dvc_yaml.exists():
        return []
    try:
        spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return []
    entries = (spec.get("stages") or {}).get(stage, {}).get("params") or []
    return [e for e in entries if isinstance(e, str)]


def lookup(raw: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return "(absent)"
        raw = raw[part]
    return raw


def flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}", v, into)
    else:
        into[prefix] = value


SHELLS = {"sh", "dash", "bash", "zsh", "fish", "ksh"}


def stop_on_parent_exit() -> None:
    """Make SIGTERM and the death of the `dvc` that started the stage stop it as Ctrl-C does.

    A killed `dvc` does not take its stage with it; a stage that kept running would write outputs into a
    workspace the user is restoring. DVC starts the command through $SHELL, and a shell such as dash
    stays alive as the stage's parent after `dvc` dies, so the watch goes up through shells to `dvc`.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    owner = os.getpid()

    def on_sigterm(signum: int, frame: Any) -> None:
        raise StageInterrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_sigterm)
    os.register_at_fork(after_in_child=default_sigterm_in_child)
    starters = starting_processes()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            gone = next((p for p in starters if not still_running(p)), None)
            if gone is not None:
                print(f"stage: the process that started it ({gone.pid}) has exited; stopping", file=sys.stderr)
                os.kill(owner, signal.SIGTERM)
                return
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def default_sigterm_in_child() -> None:
    """A forked worker (resize's pool) dies on SIGTERM at once, as by default. A Python handler there runs
    only between bytecodes: a worker that was about to block on the pool's queue when `Pool.terminate`
    signalled it would never run it, and the stage would wait for that worker forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def starting_processes() -> list[psutil.Process]:
    """The parent, and under DVC every shell above it up to the `dvc` process itself."""
    chain = [psutil.Process(os.getppid())]
    if "DVC_STAGE" not in os.environ:   # run by hand: the user's own shell is the one to watch
        return chain
    try:
        while chain[-1].name() in SHELLS and chain[-1].ppid() > 1:
            chain.append(chain[-1].parent())
    except psutil.Error:
        pass
    return [p for p in chain if p is not None]


def still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
