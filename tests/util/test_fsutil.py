"""Leftovers of a killed writer are cleared; an output moved aside is never lost."""

from __future__ import annotations

from dbooth.util.fsutil import atomic_path, remove_temporaries


def test_temporaries_are_removed_and_a_moved_aside_output_comes_back(tmp_path):
    (tmp_path / ".prior-00001.png.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".step-000004.xyz.tmp").mkdir()
    (tmp_path / ".step-000004.xyz.tmp" / "optimizer.bin").write_bytes(b"half")
    (tmp_path / ".final.old").mkdir()  # killed between moving the old output aside and moving the new one in
    (tmp_path / ".final.old" / "weights").write_bytes(b"old")
    (tmp_path / "merged").mkdir()
    (tmp_path / ".merged.old").mkdir()  # the new one arrived: the old copy is just garbage
    (tmp_path / "prior-00000.png").write_bytes(b"done")
    (tmp_path / ".dbooth.lock").write_text("")

    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dbooth.lock", "final", "merged", "prior-00000.png"]
    assert (tmp_path / "final" / "weights").read_bytes() == b"old"


def test_atomic_path_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("old")
    try:
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("half")
            raise OSError(28, "No space left on device")
    except OSError:
        pass
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    import os
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    mine = tmp_path / f".out.safetensors.{os.getpid()}.abcd1234.tmp"
    theirs = tmp_path / f".out.safetensors.{dead}.abcd1234.tmp"
    mine.write_bytes(b"in progress")
    theirs.write_bytes(b"left by a killed export")
    (tmp_path / ".final.old").mkdir()
    remove_temporaries(tmp_path, outputs_moved_aside=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, ".final.old"])
