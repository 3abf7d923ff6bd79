"""Run the real trainer on a throwaway workspace and measure it; ``run_bench`` is what ``dbooth bench`` calls.

Every configuration is measured in a fresh subprocess (``dbooth.bench.worker``) so peak memory is
its own. Steps/s comes from per-step timestamps taken by a Reporter after ``warmup`` steps; peak
memory is the process's peak RSS on the CPU and ``torch.cuda.max_memory_allocated`` on CUDA, read at
the last timed step (saving the run is not measured). With ``repeats`` > 1 the configurations are run
round-robin, so slow phases of a busy machine hit all of them alike, and medians are reported.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from dbooth.bench.configs import BENCH_FIXED, GENERATION_VARIANTS, BenchConfig, Variant, ablation, get_config
from dbooth.util.errors import DboothError
from dbooth.util.reporting import Reporter

SUBJECT_RGB = (30, 40, 210)


def cache_dir() -> Path:
    """Where random-weight models are kept between runs (``DBOOTH_BENCH_CACHE`` overrides)."""
    env = os.environ.get("DBOOTH_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dbooth" / "bench"


def base_model_for(model: str, cache: Path | None = None) -> str:
    """A base-model spec for a config's model name, building random-weight folders on first use."""
    from dbooth.bench import components

    cache = cache or cache_dir()

    def built(name: str, build) -> str:  # built and saved once (SDXL: ~14 GB and minutes), reused after
        folder = cache / name
        if not (folder / "model_index.json").is_file():
            components.save_pipeline(build(), folder)
            gc.collect()  # free it before the measured process loads the saved copy
        return str(folder)

    if model == "sd15":
        return built("sd15-random", components.sd15_pipeline)
    if model == "sdxl":
        from dbooth.bench.components_sdxl import sdxl_pipeline

        return built("sdxl-random", sdxl_pipeline)
    if model in ("sd35m", "sd35l", "flux"):  # written part by part in bf16: SD 3.5 Medium-shaped is 16 GB
        from dbooth.bench.components_flow import save_flow_pipeline

        return str(save_flow_pipeline(model, cache / f"{model}-random"))
    if model == "shapes":
        from dbooth.plugins import named_model

        shapes = named_model("builtin:shapes")
        if shapes is None:
            raise DboothError("bench shapes: the built-in world (builtin:shapes) is not installed; reinstall dbooth")
        try:
            shapes.path()
            return "builtin:shapes"
        except DboothError:  # weights not built: its architecture with random weights
            return built("shapes-random", shapes.random_pipeline)
    if model == "tiny":
        from dbooth.families.tiny import tiny_pipeline

        return built("tiny-random", tiny_pipeline)
    return model


def draw_images(folder: Path, count: int, size: int, *, subject: bool, prefix: str,
                width: int | None = None, masks: bool = False) -> list[Path]:
    """Simple drawn photos: the subject is one blue disc; class images vary shape and colour. ``width``
    (default ``size``) draws wider images; ``masks`` writes each subject's disc as its NAME.mask.png."""
    from dbooth.util.images import mask_file

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width = width or size
    for i in range(count):
        im = Image.new("RGB", (width, size), (200 - 9 * i % 120, 120 + 13 * i % 100, 60 + 7 * i % 150))
        d = ImageDraw.Draw(im)
        o = size // 10 + ((i % 16) * size // 40)  # the same for the first 16; any count stays inside the image
        box = (o, o, width - size // 5 + i % 5, size - size // 5 + i % 5)
        path = folder / f"{prefix}{i:03d}.png"
        if subject:
            d.ellipse(box, fill=SUBJECT_RGB)
            if masks:
                mask = Image.new("L", im.size, 0)
                ImageDraw.Draw(mask).ellipse(box, fill=255)
                mask.save(mask_file(path))
        else:
            colour = ((50 * i) % 255, (90 * i + 40) % 255, (140 * i + 80) % 255)
            (d.ellipse if i % 2 else d.rectangle)(box, fill=colour)
        im.save(path)
        paths.append(path)
    return paths


def draw_subject_photos(folder: Path, count: int, size: int) -> None:
    """Half square, half wide (8:5, the 1.6:1 bucket), each with a mask: the masked-loss and bucket rows of
    the ablation then have work to do; the other rows train as before (masks off, wide photos cropped square)."""
    wide = count // 2
    draw_images(folder, count - wide, size, subject=True, prefix="subject-", masks=True)
    draw_images(folder, wide, size, subject=True, prefix="subject-wide-", masks=True, width=size * 8 // 5)


def draw_class_images(folder: Path, count: int, size: int, photos: Path, resolution: int) -> None:
    """``count`` square stand-ins (what a run without buckets uses, first by name), then as many again at the
    buckets the photos use, as ``dbooth prior`` makes them with ``train.buckets`` on."""
    from dbooth.training.buckets import bucket_sizes, nearest_bucket
    from dbooth.util.images import list_images, upright_size

    draw_images(folder, count, size, subject=False, prefix="class-")
    shapes = {nearest_bucket(*upright_size(p), bucket_sizes(resolution)) for p in list_images(photos)}
    for w, h in sorted(shapes - {(resolution, resolution)}):  # at the bucket's own shape: cut to itself
        draw_images(folder, count, h, subject=False, prefix=f"class-{w}x{h}-", width=w)


def make_workspace(root: Path, base_model: str, overrides: dict, *, num_instance: int, num_class: int | None,
                   source=None, fixed: bool = True):
    """A throwaway workspace: drawn images, or copies of ``source``'s (a Workspace) images.

    ``fixed``: with the bench's settings (no checkpoints or validation; only steps are timed); ``num_class``
    None draws as many class images as the manifest asks for.
    """
    from dbooth import api
    from dbooth.workspace.config import apply_overrides, write_manifest
    from dbooth.util.images import scan_folder

    photos = root / "photos"
    if source is not None:
        found = scan_folder(source.instance_dir, what="instance images", min_side=0).paths
        photos.mkdir(parents=True)
        for p in found:
            shutil.copy2(p, photos / p.name)
        manifest = source.manifest()
    ws = api.init(root / "ws", "dog" if source is None else manifest.class_noun,
                  base_model=base_model if source is None else manifest.base_model,
                  images=None if source is None else photos)
    if source is None:
        manifest = apply_overrides(ws.manifest(), overrides)
        res = manifest.train.resolution
        draw_subject_photos(ws.instance_dir, num_instance, res)
        manifest = apply_overrides(manifest, {"train.masked_loss": False})  # the ablation turns it on
    else:
        manifest = apply_overrides(manifest, overrides)
        res = manifest.train.resolution
    if fixed:
        manifest = apply_overrides(manifest, BENCH_FIXED)
    if num_class is None:
        num_class = manifest.prior.num_class_images
    if manifest.prior.enabled:
        have = []
        if source is not None:
            have = scan_folder(source.class_dir, what="class images", min_side=0, allow_empty=True).paths
            for p in have[: manifest.prior.num_class_images]:
                shutil.copy2(p, ws.class_dir / p.name)
        if not have:  # drawn stand-ins: the bench times training, not class-image quality
            draw_class_images(ws.class_dir, num_class, res, ws.instance_dir, res)
            manifest = apply_overrides(manifest, {"prior.num_class_images": num_class})
    write_manifest(ws.manifest_path, manifest)
    return ws


def thread_env(threads: int | None) -> dict:
    """Environment for a measured process: quiet, and with a fixed number of CPU threads if given."""
    env = {"TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_worker(spec: dict, *, python: str | None = None, timeout_s: float | None = None,
               threads: int | None = None) -> dict:
    """Run one measurement in a fresh process; returns its result (with ``error`` on failure)."""
    with tempfile.TemporaryDirectory(prefix="dbooth-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, **thread_env(threads))
        try:
            proc = subprocess.run([python or sys.executable, "-m", "dbooth.bench.worker", str(spec_path),
                                   str(out_path)], capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s"}
        if not out_path.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
            return {"error": f"worker exited with {proc.returncode}: " + " | ".join(tail)}
        return json.loads(out_path.read_text())


def measure_training(ws, overrides: dict | None = None, *, warmup: int = 3, steps: int = 20,
                     patches: dict | None = None, python: str | None = None,
                     timeout_s: float | None = None, threads: int | None = None) -> dict:
    """Train ``warmup + steps`` steps of ``ws`` (a Workspace) in a fresh process and measure the last ``steps``."""
    if steps < 1 or warmup < 0:
        raise DboothError("bench: --steps must be at least 1 and --warmup at least 0")
    spec = {"kind": "train", "workspace": str(ws.root), "overrides": overrides or {}, "warmup": warmup,
            "steps": steps, "patches": patches or {}}
    return run_worker(spec, python=python, timeout_s=timeout_s, threads=threads)


def measure_generation(ws, overrides: dict | None = None, *, batch: int = 4, batches: int = 2,
                       steps: int | None = None, scheduler: str | None = "dpm++",
                       python: str | None = None, timeout_s: float | None = None,
                       threads: int | None = None) -> dict:
    """Generate ``batches`` batches of class images in a fresh process; the first batch is warm-up."""
    spec = {"kind": "generate", "workspace": str(ws.root), "overrides": overrides or {}, "batch": batch,
            "batches": max(batches, 1), "steps": steps, "scheduler": scheduler}
    return run_worker(spec, python=python, timeout_s=timeout_s, threads=threads)


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class BenchRequest:
    """What to measure: a named configuration or a workspace's own settings."""

    config: str | None = None
    workspace: Path | None = None
    steps: int = 20
    warmup: int = 3
    ablate: bool = False
    repeats: int = 1
    generation: bool = True
    generation_batches: int = 2
    generation_steps: int | None = None  # None = the manifest's prior.steps
    class_images: int | None = None  # generate this many (as `dbooth prior` would) instead of generation_batches
    overrides: dict = field(default_factory=dict)  # extra manifest overrides on top of the configuration
    timeout_s: float | None = None  # per measurement
    threads: int | None = None  # CPU threads per measured process (OMP_NUM_THREADS); None = torch's default
    reference: Path | None = None  # diffusers' train_dreambooth.py or train_dreambooth_lora.py, side by side
    only: list[str] = field(default_factory=list)  # ablation rows whose label starts with one of these (+ base)
    e2e: bool = False  # whole `dbooth train` runs with the defaults, current vs previous checkpoint policy


def _resolved(ws, overrides: dict) -> tuple[dict, dict]:
    from dbooth.workspace.config import apply_overrides, manifest_to_dict

    m = manifest_to_dict(apply_overrides(ws.manifest(), overrides))
    return m, m["train"]


def _settings_report(manifest: dict) -> dict:
    t = manifest["train"]
    keys = ("method", "train_text_encoder", "resolution", "batch_size", "mixed_precision", "gradient_checkpointing",
            "optimizer", "cache_latents", "cache_text_embeddings", "attention", "channels_last", "allow_tf32",
            "compile", "gradient_accumulation_steps")
    out = {k: t[k] for k in keys}
    if t["method"] == "lora":
        out["lora_rank"] = t["lora"]["rank"]
    out["prior_preservation"] = manifest["prior"]["enabled"]
    out["base_model"] = manifest["base_model"]
    return out


def _round_robin(rows: list[dict], repeats: int, reporter: Reporter, what: str) -> None:
    """Run each row's ``run`` once per repeat, in turn, so a busy machine slows all rows alike."""
    runners = [row.pop("run") for row in rows]
    for r in range(repeats):
        for row, run in zip(rows, runners):
            if row.get("skipped"):
                continue
            reporter.info(f"[{r + 1}/{repeats}] {what}: {row['label']}")
            row["runs"].append(run())


def _summarise(row: dict) -> None:
    ok = [x for x in row["runs"] if "error" not in x]
    if not ok:
        if row["runs"]:
            row["error"] = row["runs"][0]["error"]
        return
    row["steps_per_s"] = _median([x["steps_per_s"] for x in ok])
    row["steps_per_s_runs"] = [x["steps_per_s"] for x in ok]
    row["peak_memory_mb"] = _median([x["peak_memory_mb"] for x in ok])
    row["peak_memory_mb_runs"] = [x["peak_memory_mb"] for x in ok]


def run_bench(request: BenchRequest, reporter: Reporter | None = None) -> dict:
    """Measure a configuration (and, with ``ablate``, each speed setting flipped); returns the JSON report."""
    import torch

    reporter = reporter or Reporter()
    config, base_model, source = _bench_target(request, reporter)
    cuda = torch.cuda.is_available()
    tmp = Path(tempfile.mkdtemp(prefix="dbooth-bench-ws-"))
    try:
        ws = make_workspace(tmp, base_model, {**config.overrides, **request.overrides},
                            num_instance=config.num_instance, num_class=None if request.e2e else config.num_class,
                            source=source, fixed=not request.e2e)
        manifest, train = _resolved(ws, {})
        if request.e2e:
            return _end_to_end_report(ws, config, request, manifest, reporter)
        variants, rows, side_by_side = _measure_rows(ws, request, manifest, train, cuda, reporter)
        device = {k: rows[0]["runs"][0][k] for k in ("device", "device_type", "device_name", "torch")}
        _add_derived_figures(ws, variants, rows, device["device_name"], cuda)
        report = _bench_report(config, request, manifest, train, device, rows)
        if request.reference is not None:
            report["reference"] = side_by_side or _reference(ws, request, manifest, reporter)
        if request.generation:
            report["generation"] = _generation(ws, request, manifest, reporter)
            ok = [g for g in report["generation"] if "images_per_s" in g]
            report["class_images_per_s"] = ok[0]["images_per_s"] if ok else None
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_target(request: BenchRequest, reporter: Reporter) -> tuple[BenchConfig, str, object]:
    """The request checked, and what it names: a bench configuration and its base model, or a workspace
    (returned as the source to copy) standing in as a configuration of its own settings."""
    from dbooth.workspace.folder import open_workspace

    if (request.config is None) == (request.workspace is None):
        raise DboothError("bench: pass either --config NAME or -w WORKSPACE")
    if request.repeats < 1:
        raise DboothError("bench: --repeats must be at least 1")
    if request.config is not None:
        config = get_config(request.config)
        reporter.info(f"preparing {config.name}: {config.description}")
        return config, base_model_for(config.model), None
    source = open_workspace(request.workspace)
    config = BenchConfig(name=str(request.workspace), model="workspace", description="a workspace's own settings")
    return config, source.manifest().base_model, source


def _measure_rows(ws, request: BenchRequest, manifest: dict, train: dict, cuda: bool,
                  reporter: Reporter) -> tuple[list[Variant], list[dict], dict | None]:
    """Time the base configuration and each ablation row (with ``reference``, inside the side-by-side, whose
    dbooth row is the base); returns the variants, their rows and the side-by-side. A failed base stops here."""
    kw = dict(warmup=request.warmup, steps=request.steps, timeout_s=request.timeout_s, threads=request.threads)

    def dbooth_row(v: Variant) -> dict:
        row = {"label": v.label, "overrides": v.overrides, "patches": v.patches, "runs": [],
               "run": lambda: measure_training(ws, v.overrides, patches=v.patches, **kw)}
        if v.cuda_only and not cuda:
            row["skipped"] = "needs CUDA"
        return row

    variants = ablation(train, cuda=cuda) if request.ablate else [Variant("base")]
    if request.only:
        variants = [v for i, v in enumerate(variants) if i == 0 or v.label.startswith(tuple(request.only))]
    rows = [dbooth_row(v) for v in variants]
    side_by_side = None
    if request.reference is not None and not request.ablate:
        # the side-by-side's own dbooth row is the base measurement: no extra, unalternated runs
        side_by_side = _reference(ws, request, manifest, reporter)
        rows[0]["runs"] = side_by_side["rows"][0]["runs"]
        rows[0].pop("run")
    else:
        _round_robin(rows, request.repeats, reporter, "training")
    base = rows[0]
    _summarise(base)
    if "steps_per_s" not in base:
        raise DboothError(f"bench: the base configuration failed: {base.get('error')}")
    return variants, rows, side_by_side


def _add_derived_figures(ws, variants: list[Variant], rows: list[dict], device_name: str, cuda: bool) -> None:
    """Each measured row's medians, what the trainer was seen doing, and ``derived_figures`` from its step
    FLOPs (estimated once per distinct setting) and the device's peak (known on CUDA only)."""
    from dbooth.bench.flops import peak_tflops, step_flops

    base = rows[0]
    flops_cache: dict = {}
    for v, row in zip(variants, rows):
        _summarise(row)
        if "steps_per_s" not in row:
            continue
        row["observed"] = next(x for x in row["runs"] if "error" not in x)["observed"]
        vm, vt = _resolved(ws, v.overrides)
        key = (vt["method"], vt["train_text_encoder"], vt["cache_latents"], vt["cache_text_embeddings"],
               vt["attention"])
        if key not in flops_cache:
            flops_cache[key] = step_flops(vm["base_model"], vt, vm["prior"]["enabled"])
        peak = peak_tflops(device_name, vt["mixed_precision"], vt["allow_tf32"]) if cuda else None
        row.update(derived_figures(row["steps_per_s"], row["peak_memory_mb"], flops_cache[key]["total"], peak,
                                   base["steps_per_s"], base["peak_memory_mb"]))


def derived_figures(steps_per_s: float, peak_memory_mb: float, flops_per_step: float, peak_tflops: float | None,
                    base_steps_per_s: float, base_peak_memory_mb: float) -> dict:
    """A row's figures worked out from its measured numbers and the base row's: throughput in TFLOP/s, the
    share of the device's peak (None without one), speed and memory relative to the base. Pure arithmetic."""
    achieved = flops_per_step * steps_per_s / 1e12
    return {"flops_per_step": flops_per_step, "achieved_tflops": achieved, "peak_tflops": peak_tflops,
            "utilization": achieved / peak_tflops if peak_tflops else None,
            "speedup": steps_per_s / base_steps_per_s, "memory_ratio": peak_memory_mb / base_peak_memory_mb}


def _bench_report(config: BenchConfig, request: BenchRequest, manifest: dict, train: dict, device: dict,
                  rows: list[dict]) -> dict:
    """The JSON report of the training measurement: the base row's figures at the top, the ablation below."""
    from dbooth.bench.flops import static_memory

    base = rows[0]
    return {
        "config": config.name,
        "description": config.description,
        "device": device["device"],
        "device_type": device["device_type"],
        "torch": device["torch"],
        "threads": request.threads,
        "settings": _settings_report(manifest),
        "warmup": request.warmup,
        "steps": request.steps,
        "repeats": request.repeats,
        "steps_per_s": base["steps_per_s"],
        "steps_per_s_runs": base["steps_per_s_runs"],
        "step_seconds_median": _median([s for x in base["runs"] for s in x.get("step_seconds", [])]),
        "peak_memory_mb": base["peak_memory_mb"],
        "peak_memory_kind": base["runs"][0]["peak_memory_kind"],
        "flops_per_step": base["flops_per_step"],
        "achieved_tflops": base["achieved_tflops"],
        "peak_tflops": base["peak_tflops"],
        "utilization": base["utilization"],
        "observed": base["observed"],
        "static_memory_estimate": static_memory(manifest["base_model"], train, device["device_type"],
                                                prior=manifest["prior"]["enabled"]),
        "ablation": rows if request.ablate else [],
        "runs": base["runs"],
    }


def _reference(ws, request: BenchRequest, manifest: dict, reporter: Reporter) -> dict:
    """dbooth against diffusers' train_dreambooth.py or train_dreambooth_lora.py on the same workspace, alternating."""
    from dbooth.bench.reference import measure_reference

    kw = dict(warmup=request.warmup, steps=request.steps, timeout_s=request.timeout_s, threads=request.threads)
    ref_kw = dict(warmup=request.warmup, steps=request.steps, timeout_s=request.timeout_s,
                  env=thread_env(request.threads))
    script = Path(request.reference)
    t = manifest["train"]
    like = {"train.cache_latents": False, "train.cache_text_embeddings": False}
    rows = [
        {"label": "dbooth", "runs": [], "run": lambda: measure_training(ws, {}, **kw)},
        {"label": "dbooth, caches off (like for like)", "runs": [],
         "run": lambda: measure_training(ws, like, **kw)},
        {"label": script.name, "runs": [],
         "run": lambda: measure_reference(script, ws, manifest, precompute=False, **ref_kw)},
    ]
    if not t["train_text_encoder"]:
        rows.append({"label": f"{script.name} --pre_compute_text_embeddings", "runs": [],
                     "run": lambda: measure_reference(script, ws, manifest, precompute=True, **ref_kw)})
    _round_robin(rows, request.repeats, reporter, "side by side")
    for row in rows:
        _summarise(row)
    ref = rows[2]
    if "steps_per_s" not in ref:
        raise DboothError(f"bench --reference: {script.name} failed: {ref.get('error')}")
    for row in rows:
        if "steps_per_s" in row:
            row["speed_vs_reference"] = row["steps_per_s"] / ref["steps_per_s"]
            row["memory_vs_reference"] = row["peak_memory_mb"] / ref["peak_memory_mb"]
    command = next((x["command"] for x in ref["runs"] if "command" in x), None)
    return {"script": str(script), "rows": rows, "reference_command": command}


def measure_end_to_end(ws, policy: str = "current", *, python: str | None = None, timeout_s: float | None = None,
                       threads: int | None = None) -> dict:
    """One whole training run of ``ws`` in a fresh process; ``wall_seconds`` from process start to exit."""
    import time

    began = time.perf_counter()
    result = run_worker({"kind": "e2e", "workspace": str(ws.root), "overrides": {}, "policy": policy},
                        python=python, timeout_s=timeout_s, threads=threads)
    result["wall_seconds"] = time.perf_counter() - began
    return result


def _end_to_end_report(ws, config: BenchConfig, request: BenchRequest, manifest: dict, reporter: Reporter) -> dict:
    from dbooth.bench.end_to_end import POLICIES, summarise

    def row(policy: str) -> dict:
        return {"label": policy, "description": POLICIES[policy], "runs": [],
                "run": lambda: measure_end_to_end(ws, policy, timeout_s=request.timeout_s, threads=request.threads)}

    rows = [row(p) for p in POLICIES]
    _round_robin(rows, request.repeats, reporter, "end to end")
    summarise(rows)
    ok = [r for row in rows for r in row["runs"] if "error" not in r]
    if not ok:
        raise DboothError(f"bench --e2e: the training run failed: {rows[0].get('error')}")
    t, p = manifest["train"], manifest["prior"]
    return {
        "mode": "e2e",
        "config": config.name,
        "description": config.description,
        "device": ok[0]["device"],
        "torch": ok[0]["torch"],
        "threads": request.threads,
        "settings": {**_settings_report(manifest), "max_steps": t["max_steps"],
                     "checkpoint_every": t["checkpoint_every"], "keep_checkpoints": t["keep_checkpoints"],
                     "validation_every": t["validation_every"],
                     "validation_images": t["validation_images"] * len(t["validation_prompts"]),
                     "num_class_images": p["num_class_images"]},
        "repeats": request.repeats,
        "rows": rows,
    }


def _generation(ws, request: BenchRequest, manifest: dict, reporter: Reporter) -> list[dict]:
    variants = GENERATION_VARIANTS if request.ablate else GENERATION_VARIANTS[:1]
    batch = manifest["prior"]["batch_size"]
    batches = request.generation_batches
    if request.class_images:  # the first batch is in the count (and the split) but not in the steady images/s
        batches = max(2, -(-request.class_images // batch))

    def row(v: dict) -> dict:
        b = batch if v["batched"] else 1
        # the same number of timed images either way: one at a time runs batch x as many batches
        n = batches if v["batched"] else 1 + (batches - 1) * batch
        steps = v.get("steps", request.generation_steps)
        return {"label": v["label"], "runs": [], "run": lambda: measure_generation(
            ws, batch=b, batches=n, steps=steps, scheduler=v["scheduler"], timeout_s=request.timeout_s,
            threads=request.threads)}

    rows = [row(v) for v in variants]
    _round_robin(rows, request.repeats, reporter, "class images")
    for r in rows:
        ok = [x for x in r["runs"] if "error" not in x]
        if not ok:
            r["error"] = r["runs"][0]["error"] if r["runs"] else "not run"
            continue
        r["images_per_s"] = _median([x["images_per_s"] for x in ok])
        r["peak_memory_mb"] = _median([x["peak_memory_mb"] for x in ok])
        r["batch"], r["steps"] = ok[0]["batch"], ok[0]["steps"]
        splits = [x["split"] for x in ok if x.get("split")]
        if splits:  # dbooth's own generation: the median run's split, by whole time (load included)
            whole = sorted(splits, key=lambda t: t["load"] + t["seconds"])
            r["split"] = whole[len(whole) // 2]
    return rows


__all__ = ["BenchRequest", "run_bench", "measure_training", "measure_generation", "measure_end_to_end",
           "make_workspace",
           "base_model_for", "draw_images", "cache_dir"]
