"""Bad input, at scale: each case through the real CLI ends in one ``error:`` line, exit code 2, no
traceback, and leaves the workspace as it was (nothing half-written, no run folder started).

Workspaces are prepared in-process; the commands run two at a time (each subprocess pays the imports).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from run_cli import run_dbooth, user_error

from dbooth import api
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.workspace.lock import LOCK_NAME
from dbooth.workspace.folder import MANIFEST_NAME

pytestmark = pytest.mark.slow

FAST = {"prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 2, "train.checkpoint_every": 0,
        "train.validation_every": 0, "prior.enabled": False}
ROOT = os.geteuid() == 0  # root reads and writes through permissions: those cases cannot fail for it


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


class Cases:
    """Builds one workspace per case under ``root``; each builder returns the CLI arguments."""

    def __init__(self, root: Path, tiny_base: Path, photos: Path):
        self.root, self.base, self.photos = root, tiny_base, photos

    def ws(self, name: str, **overrides):
        ws = api.init(self.root / name, "dog", base_model=str(self.base), images=self.photos)
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {**FAST, **overrides}))
        return ws

    def manifest_text(self, name: str, text: str | bytes):
        ws = self.ws(name)
        if isinstance(text, bytes):
            ws.manifest_path.write_bytes(text)
        else:
            ws.manifest_path.write_text(text)
        return ["train", "-w", name]

    def edit(self, name: str, old: str, new: str, verb: str = "train"):
        ws = self.ws(name)
        text = ws.manifest_path.read_text()
        lines = [new if line.strip().startswith(old) else line for line in text.splitlines()]
        assert lines != text.splitlines(), old
        ws.manifest_path.write_text("\n".join(lines) + "\n")
        return [verb, "-w", name]

    def photo(self, name: str, filename: str, data: bytes | None = None, link: str | None = None):
        ws = self.ws(name)
        path = ws.instance_dir / filename
        if link is not None:
            os.symlink(link, path)
        else:
            path.write_bytes(data)
        return ["train", "-w", name]

    def finished_run(self, name: str, method: str):
        ws = self.ws(name)
        run = ws.runs_dir / f"20240101-000000-{method}"
        (run / "final").mkdir(parents=True)
        if method == "lora":
            (run / "final" / "pytorch_lora_weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        else:
            (run / "final" / "model_index.json").write_text("{}")
        (run / "run.json").write_text(json.dumps({
            "run_id": run.name, "method": method, "status": "complete", "base_model": str(self.base),
            "identifier": "sks", "class_noun": "dog", "instance_prompt": "a photo of sks dog", "steps": 2,
            "lora": {"rank": 4, "alpha": 4} if method == "lora" else None, "created": 1}))
        return ws

    def model_folder(self, name: str, edit) -> str:
        folder = self.root / "models" / name
        shutil.copytree(self.base, folder)
        edit(folder)
        return str(folder)


def build(c: Cases) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """case -> (arguments, words the error line must contain)."""
    root = c.root
    (root / "a-file").write_text("not a workspace")
    (root / "no-manifest").mkdir()
    c.ws("none-finished")
    api.init(root / "no-photos", "dog", base_model=str(c.base))
    c.finished_run("full-run", "full")
    c.ws("unknown-run")
    c.ws("nothing-to-resume")
    c.ws("resume-options")
    c.ws("sample-placeholder")
    c.finished_run("export-dtype", "lora")
    c.finished_run("export-format", "lora")
    corrupt = root / "models" / "corrupt.safetensors"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"\xff" * 64)
    ckpt = root / "models" / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04N.")
    flux = c.model_folder("flux", lambda f: (f / "model_index.json").write_text('{"_class_name": "FluxPipeline"}'))
    damaged = c.model_folder("damaged", lambda f: (f / "model_index.json").write_text("{not json"))
    c.ws("caption-utf8", instance_captions="files")
    for photo in (root / "caption-utf8" / "instance").glob("*.jpg"):
        photo.with_suffix(".txt").write_bytes(b"a photo of sks dog \xff\xfe\n")

    cases = {
        # manifests
        "yaml": (c.manifest_text("yaml", "class_noun: dog\ntrain: [unclosed\n"), (f"{MANIFEST_NAME}:2", "'[' opened on this line is not closed")),
        "type": (c.edit("type", "max_steps:", "  max_steps: many"), ("train.max_steps", "many")),
        "range": (c.edit("range", "max_steps:", "  max_steps: -1"), ("train.max_steps", "-1")),
        "range-float": (c.edit("range-float", "loss_weight:", "  loss_weight: -2.0", "prior"), ("prior.loss_weight",)),
        "choice": (c.edit("choice", "mixed_precision:", "  mixed_precision: fp8"), ("mixed_precision", "fp8")),
        "unknown-key": (c.edit("unknown-key", "learning_rate:", "  learing_rate: 1e-4", "prior"),
                        ("learing_rate", "learning_rate")),
        "newer-version": (c.edit("newer-version", "version:", "version: 99"), ("version", "99")),
        "non-utf8": (c.manifest_text("non-utf8", b"class_noun: \xff\xfe dog\n"), (MANIFEST_NAME, "save it as UTF-8")),
        "empty-manifest": (c.manifest_text("empty-manifest", ""), (MANIFEST_NAME, "empty")),
        "not-a-mapping": (c.manifest_text("not-a-mapping", "- just\n- a list\n"), (MANIFEST_NAME,)),
        "identifier-in-manifest": (c.edit("identifier-in-manifest", "identifier:", "identifier: two words"),
                                   ("identifier", "space")),
        # identifiers and class nouns on the command line
        "id-two-words": (["init", "i1", "--class", "dog", "--identifier", "two words"], ("identifier", "space")),
        "id-empty": (["init", "i2", "--class", "dog", "--identifier", ""], ("identifier",)),
        "id-symbols": (["init", "i3", "--class", "dog", "--identifier", "<sks>"], ("identifier", "'<'")),
        "id-emoji": (["init", "i4", "--class", "dog", "--identifier", "sks\u2764"], ("identifier",)),
        "class-empty": (["init", "i5", "--class", ""], ("class_noun",)),
        "class-missing": (["init", "i6"], ("--class",)),
        "example-unknown": (["init", "i7", "--example", "unicorn"], ("unicorn",)),
        "init-exists": (["init", "none-finished", "--class", "cat"], ("already exists",)),
        # images
        "zero-bytes": (c.photo("zero-bytes", "empty.jpg", b""), ("empty.jpg",)),
        "truncated": (c.photo("truncated", "cut.png", (c.photos / "00.jpg").read_bytes()[:300]), ("cut.png",)),
        "bomb": (c.photo("bomb", "bomb.png", png_header_only(30000, 30000)), ("bomb.png",)),
        "wrong-format": (c.photo("wrong-format", "scan.tiff", b"%PDF-1.4 not an image"), ("scan.tiff",)),
        "link-loop": (c.photo("link-loop", "loop.jpg", link="loop.jpg"), ("loop.jpg", "loop")),
        "link-out": (c.photo("link-out", "out.jpg", link=str(c.photos / "00.jpg")), ("out.jpg", "outside")),
        "steps-zero": (["train", "-w", "none-finished", "--steps", "0"], ("max_steps",)),
        "no-photos": (["train", "-w", "no-photos"], ("instance images", "empty")),
        # workspaces
        "ws-missing": (["train", "-w", "nope"], ("nope", "does not exist")),
        "ws-file": (["prior", "-w", "a-file"], ("a-file", "not a folder")),
        "ws-no-manifest": (["status", "-w", "no-manifest"], (MANIFEST_NAME,)),
        # runs
        "none-finished": (["sample", "-w", "none-finished", "a photo of sks dog"], ("no finished",)),
        "unknown-run": (["export", "-w", "unknown-run", "--format", "lora", "--run", "20990101-x"], ("20990101-x",)),
        "lora-of-full": (["export", "-w", "full-run", "--format", "lora-kohya"], ("full fine-tune",)),
        "merge-full": (["merge-lora", "-w", "full-run"], ("full fine-tune",)),
        "export-dtype": (["export", "-w", "export-dtype", "--format", "lora", "--dtype", "fp64"], ("fp64",)),
        "export-format": (["export", "-w", "export-format", "--format", "onnx"], ("onnx",)),
        "nothing-to-resume": (["train", "-w", "nothing-to-resume", "--resume"], ("no unfinished run",)),
        "resume-options": (["train", "-w", "resume-options", "--resume", "--lr", "1"], ("--resume",)),
        "placeholder": (["sample", "-w", "sample-placeholder", "--base-only", "a {colour} dog"], ("{colour}",)),
        "caption-utf8": (["train", "-w", "caption-utf8"], ("UTF-8",)),
        # models
        "offline": (c.edit("offline", "base_model:", "base_model: some-org/not-cached"), ("cannot be reached",)),
        "wrong-family": (c.edit("wrong-family", "base_model:", f"base_model: {flux}"), ("FluxPipeline",)),
        "damaged-index": (c.edit("damaged-index", "base_model:", f"base_model: {damaged}"), ("model_index.json",)),
        "corrupt-safetensors": (c.edit("corrupt-safetensors", "base_model:", f"base_model: {corrupt}"),
                                ("corrupt.safetensors",)),
        "pickle-base": (["init", "i8", "--class", "dog", "--base", str(ckpt)], ("pickle", "--allow-pickle")),
        "missing-base-file": (c.edit("missing-base-file", "base_model:", f"base_model: {root}/gone.safetensors"),
                              ("gone.safetensors", "does not exist")),
    }
    if not ROOT:  # permissions do not stop root
        c.ws("unreadable-photo")
        (root / "unreadable-photo" / "instance" / "00.jpg").chmod(0)
        cases["unreadable-photo"] = (["train", "-w", "unreadable-photo"], ("00.jpg",))
        ro = c.ws("read-only")
        for p in (ro.root, ro.class_dir):
            p.chmod(0o555)
        cases["read-only"] = (["prior", "-w", "read-only", "-n", "1"], ("writable",))
    return cases


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime; the lock file may come and go (it is empty after)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            if name == LOCK_NAME:
                continue
            st = p.lstat()  # a folder's own mtime moves with the lock file: only its existence counts
            out[str(p.relative_to(root))] = (0, 0) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("bad")
    photos = root / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (200, 40 * i, 60)).save(photos / f"{i:02d}.jpg")
    cases = build(Cases(root, tiny_base, photos))
    before = snapshot(root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_dbooth, args, root) for name, (args, _) in cases.items()}
        results = {name: f.result() for name, f in futures.items()}
    return cases, results, before, snapshot(root)


def test_there_are_at_least_30_cases(outcomes):
    assert sorted(outcomes[0]) == sorted(NAMES) and len(NAMES) >= 30


NAMES = ["yaml", "type", "range", "range-float", "choice", "unknown-key", "newer-version", "non-utf8",
                 "empty-manifest", "not-a-mapping", "identifier-in-manifest", "id-two-words", "id-empty",
                 "id-symbols", "id-emoji", "class-empty", "class-missing", "example-unknown", "init-exists",
                 "zero-bytes", "truncated", "bomb", "wrong-format", "link-loop", "link-out", "no-photos",
                 "ws-missing", "ws-file", "ws-no-manifest", "none-finished", "unknown-run", "lora-of-full",
                 "merge-full", "export-dtype", "export-format", "nothing-to-resume", "resume-options",
                 "placeholder", "caption-utf8", "offline", "wrong-family", "damaged-index", "corrupt-safetensors",
                 "pickle-base", "missing-base-file", "steps-zero"] + ([] if ROOT else ["unreadable-photo", "read-only"])


@pytest.mark.parametrize("case", NAMES)
def test_one_line_exit_2_no_traceback_nothing_written(outcomes, case):
    cases, results, before, after = outcomes
    _, words = cases[case]
    message = user_error(results[case])
    for word in words:
        assert word.lower() in message.lower(), f"{case}: {word!r} not in {message!r}"
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"{case} changed {sorted(changed)[:5]}"

