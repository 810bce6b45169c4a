"""Shared start-up for the `stages/*.py` commands: load params, turn input errors into clear exits."""
from __future__ import annotations

import functools
import sys
from typing import Callable

import typer

from captioning.io import InputError


def stage_command(fn: Callable) -> Callable:
    """Wrap a stage so a bad parameter or input stops it at once with a message, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
    return wrapper


def typer_app(help_text: str) -> typer.Typer:
    return typer.Typer(add_completion=False, help=help_text, pretty_exceptions_enable=False)
