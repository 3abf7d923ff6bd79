"""Files dbooth writes get the mode a plain write would give (0666 less the umask), not mkstemp's 0600:
an export must be readable by a ComfyUI service or a colleague."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from previous_main import finished_workspace

from dbooth import api
from dbooth.util import fsutil



def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_follow_the_umask(tmp_path):
    """Under umask 027 (read for the group, nothing for others) and 022, in a fresh process each."""
    for umask, expected in ((0o027, 0o640), (0o022, 0o644)):
        target = tmp_path / f"u{umask:o}"
        code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from pathlib import Path\n"
                "from dbooth.util.fsutil import atomic_path, atomic_write_text\n"
                "d = Path(sys.argv[1]); atomic_write_text(d / 'a.txt', 'x')\n"
                "with atomic_path(d / 'b.bin') as p: p.write_bytes(b'y')\n")
        subprocess.run([sys.executable, "-c", code, str(target), f"{umask:o}"], check=True)
        assert {p.name: mode(p) for p in target.iterdir()} == {"a.txt": expected, "b.bin": expected}


@pytest.fixture
def finished(tmp_path):
    """The previous main's finished LoRA run on builtin:shapes (tests/fixtures/previous-main)."""
    return api.open_workspace(finished_workspace(tmp_path / "ws"))


def test_an_export_a_sample_and_the_manifest_are_readable_by_others(finished, tmp_path):
    plain = fsutil._FILE_MODE
    assert plain == 0o666 & ~_umask()
    made = api.init(tmp_path / "fresh", "heart", base_model="builtin:shapes")
    exported = api.export(finished, "lora-kohya", out=tmp_path / "out" / "heart.safetensors")
    result = api.sample(finished, "a photo of a {identifier} {class}", {"sample.steps": 2, "sample.num_images": 1})
    images = sorted(Path(result.folder).glob("*.png")) if hasattr(result, "folder") else sorted(
        (finished.root / "samples").rglob("*.png"))
    assert images
    for path in [made.root / "dbooth.yaml", exported, exported.with_suffix(".md"), *images]:
        assert mode(path) == plain, (path, oct(mode(path)))


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
