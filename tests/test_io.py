"""Atomic writes: the file appears whole, with the permissions an ordinary write would give it."""
import os
import stat
import sys

import pytest

from captioning.io import atomic_path, atomic_write_json, read_json

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the previous one back."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomically_written_files_are_readable_by_others_under_umask_022(tmp_path, umask):
    umask(0o022)
    atomic_write_json(tmp_path / "metrics.json", {"cider": 1.0})
    with atomic_path(tmp_path / "plot.png", ".png") as tmp:
        with open(tmp, "wb") as f:       # how savefig, torch.save and PIL write into the temporary name
            f.write(b"png bytes")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("what an ordinary write gives")
    assert _mode(tmp_path / "plain.txt") == 0o644
    assert _mode(tmp_path / "metrics.json") == 0o644
    assert _mode(tmp_path / "plot.png") == 0o644
    assert read_json(tmp_path / "metrics.json") == {"cider": 1.0}


def test_atomic_writes_follow_a_private_umask_too(tmp_path, umask):
    umask(0o077)
    atomic_write_json(tmp_path / "metrics.json", {})
    assert _mode(tmp_path / "metrics.json") == 0o600


def test_a_failed_atomic_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
