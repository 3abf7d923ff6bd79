"""Peak host memory (RSS) of setting up a bf16 LoRA run of an SD 3.5 Medium-shaped model, against its bf16 size.

The random-weight SD 3.5 Medium-shaped pipeline (dbooth.bench.components_flow: 2.47B transformer, CLIP-L, CLIP-G,
T5-XXL, VAE; ~16.3 GB in bf16, 9.5 GB of it T5) is written once to FOLDER/sd35m-random in bf16 safetensors. Each
measurement then runs in a fresh process, as training sets a run up on this CPU:

    bf16: load_pipeline(path, dtype=torch.bfloat16), then prepare_models(pipe, TrainConfig(method="lora",
          mixed_precision="bf16"), cpu, torch.bfloat16): frozen weights loaded straight in their training dtype
    fp32: load_pipeline(path, dtype=torch.float32), then the same prepare_models (which casts to bf16): the old path

and reports ru_maxrss after loading and after prepare_models, the process's RSS before loading (imports), the
weights' bf16 size (from the safetensors headers) and the load average (uptime) beside each figure. Loaded in the
files' own dtype, safetensors weights are memory-mapped, not copied: they become resident (as file pages, which the
kernel may drop and read again) only when read, so the figures are given again after reading every weight once, as
training's first steps will. SD 3.5's transformer also builds its 384x384 sin-cos position table in float64 when it
is constructed (diffusers' PatchEmbed): a ~3.6 GB transient whatever the load dtype.

The full-size model needs ~17 GB free for the bf16 path and ~33 GB for the fp32 one: a path whose need is over the
available memory is skipped (and said so), and the full size refuses to start on a busy machine (1-minute load
average >= 1.5 or under 18 GB available) unless --force. --small writes the same widths with one block per stack
(~1.6 GB in bf16) to try the script.

    python benchmarks/flow_setup_rss.py ~/.cache/dbooth/bench --json flow-setup-rss.json
    python benchmarks/flow_setup_rss.py /tmp/rss --small
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

GB = 1e9


def load_average() -> str:
    """The three load averages as uptime prints them."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
        return out.rsplit("load average:", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no MemAvailable in /proc/meminfo")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def shape(small: bool):
    from dbooth.bench.components_flow import flow_shape, small_shape

    return small_shape(flow_shape("sd35m"), layers=1) if small else flow_shape("sd35m")


def bf16_bytes(folder: Path) -> int:
    """Every tensor of the folder's safetensors at 2 bytes an element (the files are written in bf16)."""
    from safetensors import safe_open

    total = 0
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                total += 2 * n
    return total


# -- the measured processes ------------------------------------------------------------------------------------------
def child_build(folder: Path, small: bool) -> dict:
    from dbooth.bench.components_flow import save_flow_pipeline

    start = time.perf_counter()
    save_flow_pipeline(shape(small), folder)
    return {"seconds": time.perf_counter() - start, "peak_rss": peak_rss()}


def child_setup(folder: Path, load_dtype: str) -> dict:
    import torch

    from dbooth.families.loading import load_pipeline
    from dbooth.training.setup import prepare_models
    from dbooth.workspace.schema import TrainConfig

    out = {"imports_rss": current_rss(), "load_average_start": load_average()}
    start = time.perf_counter()
    pipe = load_pipeline(str(folder), dtype=getattr(torch, load_dtype))
    out.update(load_seconds=time.perf_counter() - start, peak_after_load=peak_rss(), rss_after_load=current_rss())
    cfg = TrainConfig(method="lora", mixed_precision="bf16")
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.bfloat16)
    out.update(setup_seconds=time.perf_counter() - start, peak_after_setup=peak_rss(), rss_after_setup=current_rss(),
               trainable=sum(p.numel() for p in models.denoiser.parameters() if p.requires_grad),
               mapped_after_setup=mapped_rss())
    with torch.no_grad():  # what training will read: every weight, so every page of a memory-mapped file
        for model in [models.denoiser, models.vae, *models.text_encoders.values()]:
            for p in model.parameters():
                p.sum()
    out.update(peak_after_touch=peak_rss(), rss_after_touch=current_rss(), mapped_after_touch=mapped_rss(),
               load_average_end=load_average())
    return out


def mapped_rss() -> int:
    """Resident bytes of this process's mappings of .safetensors files: weights read in place, not copied."""
    total, mapped = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line: range perms offset dev inode [path]
            mapped = line.rstrip().endswith(".safetensors")
        elif mapped and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1],
                "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the parent ------------------------------------------------------------------------------------------------------
def check_machine(small: bool, force: bool) -> None:
    one_minute = os.getloadavg()[0]
    free = available_bytes()
    if not small and not force and (one_minute >= 1.5 or free < 18 * GB):
        raise SystemExit(f"machine busy (1-minute load {one_minute:.2f}, {free / GB:.1f} GB available): the full-size "
                         "measurement wants load < 1.5 and > 18 GB available; rerun later, or with --force")


def build(folder: Path, small: bool) -> dict:
    if (folder / "model_index.json").is_file():
        return {"cached": True}
    print(f"building the random-weight pipeline in {folder} (once) ...", flush=True)
    return run_child("build", str(folder), "small" if small else "full")


def measure(folder: Path, size: int, paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        need = size * (2 if path == "float32" else 1) + 1.5 * GB  # the weights in the load dtype, plus torch itself
        row = {"path": path, "need_estimate": need, "available": available_bytes(), "load_average": load_average()}
        if need > row["available"]:
            row["skipped"] = f"needs ~{need / GB:.1f} GB, {row['available'] / GB:.1f} GB available"
        else:
            print(f"measuring {path} load + prepare_models ...", flush=True)
            row.update(run_child("setup", str(folder), path))
        rows.append(row)
    return rows


def report(size: int, built: dict, rows: list[dict]) -> None:
    print(f"\nweights in bf16: {size / GB:.2f} GB; build: {built}")
    for r in rows:
        if "skipped" in r or "error" in r:
            print(f"{r['path']:>8}: {r.get('skipped') or r.get('error')} (load average {r['load_average']})")
            continue
        setup = r["peak_after_setup"] - r["imports_rss"]
        touched = r["peak_after_touch"] - r["imports_rss"]
        print(f"{r['path']:>8}: set-up peak RSS {r['peak_after_setup'] / GB:.2f} GB ({r['peak_after_load'] / GB:.2f} "
              f"after load, imports {r['imports_rss'] / GB:.2f}): less imports {setup / GB:.2f} GB = "
              f"{setup / size:.2f}x the bf16 size; RSS after set-up {r['rss_after_setup'] / GB:.2f} GB "
              f"({r['mapped_after_setup'] / GB:.2f} of it mapped files); every weight read: peak "
              f"{r['peak_after_touch'] / GB:.2f} GB, less imports {touched / size:.2f}x the bf16 size, RSS "
              f"{r['rss_after_touch'] / GB:.2f} GB ({r['mapped_after_touch'] / GB:.2f} mapped files); "
              f"{r['setup_seconds']:.0f} s; "
              f"load average {r['load_average_start']} -> {r['load_average_end']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="where the random-weight pipeline is kept (built on first use)")
    ap.add_argument("--small", action="store_true", help="one block per stack at full widths (~1.6 GB bf16)")
    ap.add_argument("--paths", default="bfloat16,float32", help="load dtypes to measure, in order")
    ap.add_argument("--force", action="store_true", help="run the full size on a busy machine")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    check_machine(args.small, args.force)
    folder = args.folder / ("sd35m-small-random" if args.small else "sd35m-random")
    built = build(folder, args.small)
    if "error" in built:
        raise SystemExit(f"build failed: {built['error']}")
    size = bf16_bytes(folder)
    rows = measure(folder, size, args.paths.split(","))
    report(size, built, rows)
    if args.json:
        args.json.write_text(json.dumps({"bf16_bytes": size, "small": args.small, "build": built, "rows": rows,
                                         "cpus": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, folder = sys.argv[2], Path(sys.argv[3])
        result = child_build(folder, sys.argv[4] == "small") if kind == "build" else child_setup(folder, sys.argv[4])
        print(json.dumps(result))
    else:
        main()
