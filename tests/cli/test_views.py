"""The CLI's result layouts (dbooth.cli.views): every figure passed in is printed, in its place."""

from __future__ import annotations

from dbooth.cli import views
from dbooth.cli.console import answer


def _printed(fn, *args) -> str:
    with answer.capture() as cap:
        fn(*args)
    return cap.get()


def test_eval_table_marks_the_best_checkpoint_and_prints_missing_figures_as_a_dash():
    row = {"dino": 0.5, "clip_i": 0.6, "clip_t": 0.3, "pres": 0.2, "div_dino": None}
    data = {"run": "r1", "prompts": "dreambench", "images_per_prompt": 2,
            "metrics": {"base": row, "step-000002": {**row, "dino": 0.75}},
            "best": {"checkpoint": "step-000002", "rule": "highest dino"}}
    out = _printed(views.print_eval, data)
    assert "step-000002 (best)" in out and "0.750" in out and "-" in out
    assert "best checkpoint: step-000002 (highest dino)" in out


def test_bench_tables_compare_each_row_with_its_baseline_and_say_why_a_row_is_missing():
    row = {"label": "compile", "steps_per_s": 5.19, "speedup": 0.87, "peak_memory_mb": 627.0, "memory_ratio": 0.85,
           "steps_per_s_runs": [5.08, 6.31]}
    ref = {"label": "train_dreambooth.py", "steps_per_s": 13.48, "speed_vs_reference": 1.0, "peak_memory_mb": 898.0,
           "memory_vs_reference": 1.0, "steps_per_s_runs": [13.5]}
    report = {"config": "shapes-full", "description": "d", "device": "cpu", "torch": "2.13.0",
              "settings": {"method": "full", "resolution": 64, "batch_size": 1, "prior_preservation": True,
                           "mixed_precision": "no"},
              "warmup": 3, "steps": 40, "repeats": 1, "peak_memory_kind": "RSS", "steps_per_s": 20.69,
              "peak_memory_mb": 887.0, "flops_per_step": 1e9, "achieved_tflops": 0.02, "utilization": None,
              "ablation": [row, {"label": "AdamW 8-bit", "skipped": "needs CUDA"}],
              "reference": {"rows": [ref, {"label": "broken", "error": "exit 1"}]}, "generation": []}
    out = _printed(views.print_bench, report)
    assert "x base" in out and "0.87" in out and "627" in out and "5.08 6.31" in out and "needs CUDA" in out
    assert "x reference" in out and "13.480" in out and "exit 1" in out and "20.690" in out
