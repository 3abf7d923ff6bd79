"""Free space is checked before large writes; a failed write becomes one line saying what is intact."""

from __future__ import annotations

import errno
from collections import namedtuple

import pytest

from dbooth.util import diskspace
from dbooth.util.diskspace import require_free, writing
from dbooth.util.errors import DboothError

Usage = namedtuple("Usage", "total used free")


def test_require_free_names_the_amount_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 5 * 2**20))
    with pytest.raises(DboothError) as err:
        require_free(tmp_path / "not" / "yet", 2 * 2**30, "3 class images")
    message = str(err.value)
    assert "3 class images" in message and str(tmp_path) in message
    assert "2.0 GB" in message and "5.0 MB free" in message


def test_enough_space_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))
    require_free(tmp_path, 10**9, "a checkpoint")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "not writable"),
                                         (errno.EACCES, "not writable")])
def test_failed_writes_become_one_line(tmp_path, code, words):
    with pytest.raises(DboothError) as err:
        with writing("checkpoint step-000004", tmp_path, kept="checkpoint step-000002 is intact"):
            raise OSError(code, "simulated")
    message = str(err.value)
    assert words in message and "step-000004" in message and "step-000002 is intact" in message


def test_other_os_errors_are_not_disguised(tmp_path):
    with pytest.raises(FileNotFoundError):
        with writing("x", tmp_path):
            raise FileNotFoundError(errno.ENOENT, "gone")
