"""``dbooth status``: a workspace's subject, photos, class images and the state of every run."""

from __future__ import annotations

import os
import subprocess
import sys

from PIL import Image

from dbooth import api
from dbooth.workspace.config import apply_overrides, write_manifest
from dbooth.util.pngmeta import write_png
from dbooth.generate.class_images import recipe
from dbooth.workspace.status import run_status, workspace_status
from dbooth.workspace.folder import new_run


def _ws(tmp_path):
    return api.init(tmp_path / "star", "star", example="checkered_star")


def _run(ws, method="full", **info):
    run = new_run(ws, method)
    run.write_info({"run_id": run.id, "method": method, "created": len(list(ws.runs_dir.iterdir())), **info})
    return run


def _checkpoint(run, step: int, size: int = 10, *, resume_state: bool = True):
    folder = run.checkpoints_dir / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "trainable_0.safetensors").write_bytes(b"x" * size)
    if resume_state:  # only the newest checkpoint keeps what resuming needs
        for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
            (folder / name).write_bytes(b"x")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_run_state_is_told_apart(tmp_path):
    ws = _ws(tmp_path)
    finished = _run(ws, status="complete", steps=400, planned_steps=400, final_loss=0.125, train_seconds=61.2)
    interrupted = _run(ws, "lora", status="interrupted", interrupted_at=250, planned_steps=400)
    _checkpoint(interrupted, 200)
    failed = _run(ws, status="failed", error="CUDA out of memory", planned_steps=400)
    live = _run(ws, status="running", pid=os.getpid(), planned_steps=400)
    killed = _run(ws, status="running", pid=_dead_pid(), planned_steps=400)
    _checkpoint(killed, 100, size=1000, resume_state=False)
    _checkpoint(killed, 300, size=1000)
    stripped = _run(ws, status="interrupted", interrupted_at=150, planned_steps=400)
    _checkpoint(stripped, 100, resume_state=False)

    by_id = {r.id: r for r in workspace_status(ws).runs}
    f = by_id[finished.id]
    assert (f.state, f.steps_done, f.steps_planned, f.final_loss, f.resumable) == ("finished", 400, 400, 0.125, False)
    i = by_id[interrupted.id]
    assert (i.state, i.steps_done, i.resumable, i.checkpoints) == ("interrupted", 250, True, [200])
    x = by_id[failed.id]
    assert (x.state, x.error, x.resumable) == ("failed", "CUDA out of memory", False)
    r = by_id[live.id]
    assert (r.state, r.pid, r.resumable) == ("running", os.getpid(), False)
    k = by_id[killed.id]
    assert (k.state, k.steps_done, k.resumable, k.checkpoints, k.resume_from) == ("stopped", 300, True, [100, 300], 300)
    s = by_id[stripped.id]  # weights to sample, nothing to resume from
    assert (s.checkpoints, s.resume_from, s.resumable) == ([100], None, False)
    assert k.size_bytes >= 2000 and k.size_bytes > f.size_bytes


def test_runs_written_before_pids_were_recorded_are_not_called_stopped(tmp_path):
    ws = _ws(tmp_path)
    run = _run(ws, status="running", steps=800)
    status = run_status(run)
    assert status.state == "running" and status.steps_planned == 800


def test_class_images_made_with_other_settings_are_counted(tmp_path):
    ws = _ws(tmp_path)
    manifest = ws.manifest()
    image = Image.new("RGB", (8, 8))
    write_png(ws.class_dir / "prior-00000.png", image, dict(recipe(manifest), index=0))
    write_png(ws.class_dir / "prior-00001.png", image, dict(recipe(manifest), index=1, prompt="a photo of a cat"))
    image.save(ws.class_dir / "mine.jpg")  # the user's own: never stale

    st = workspace_status(ws)
    assert (st.class_images, st.class_images_stale, st.photos) == (3, 1, 5)
    write_manifest(ws.manifest_path, apply_overrides(manifest, {"prior.steps": manifest.prior.steps + 1}))
    assert workspace_status(ws).class_images_stale == 2


def test_shell_completion_offers_run_ids_newest_first(tmp_path):
    ws = _ws(tmp_path)
    older = _run(ws, status="complete")
    newer = _run(ws, status="complete")
    env = dict(os.environ, _DBOOTH_COMPLETE="complete_bash", COMP_WORDS=f"dbooth export -w {ws.root} --run ",
               COMP_CWORD="5")
    out = subprocess.run([sys.executable, "-m", "dbooth"], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [newer.id, older.id], out.stderr


def test_status_says_the_runs_options(tmp_path):
    from dbooth.workspace.run_options import run_options

    ws = _ws(tmp_path)
    cfg = apply_overrides(ws.manifest(), {"train.method": "lora", "train.lora.use_dora": True,
                                          "train.snr_gamma": 5.0}).train
    run = _run(ws, "lora", status="complete", steps=4, planned_steps=4, options=run_options(cfg))
    assert run_status(run).options == ["DoRA", "Min-SNR 5"]
    old = _run(ws, status="complete", steps=4)  # a run.json from before options were recorded
    assert run_status(old).options == []


def test_status_names_each_runs_page_once_written(tmp_path, capsys):
    from dbooth.cli.views import print_status
    from dbooth.runpage.page import write_run_page

    ws = _ws(tmp_path)
    run = _run(ws, "lora", status="complete", steps=4, planned_steps=4)
    assert run_status(run).page is None  # no verb has written it yet
    page = write_run_page(run.dir)
    assert run_status(run).page == str(page) == str(run.dir / "report.html")
    print_status(workspace_status(ws))
    assert f"page: {page}" in capsys.readouterr().out
