"""The demo's result table (dbooth_shapes.cli.print_demo): every figure passed in is printed, in its place."""

from __future__ import annotations

from dbooth.cli.console import answer
from dbooth_shapes.cli import print_demo


def _printed(fn, *args) -> str:
    with answer.capture() as cap:
        fn(*args)
    return cap.get()


def test_demo_table_shows_base_and_fine_tuned_and_stage_b_with_the_oracle_rows():
    figures = {"subject_fidelity": 0.917, "prompt_fidelity": 1.0, "pres": 0.0, "div": 0.119}
    m = {**figures, "base": {"subject_fidelity": 0.0, "prompt_fidelity": 1.0, "pres": 0.0, "div": 0.232}}
    out = _printed(print_demo, m, "striped_heart")
    assert "striped_heart: base model vs fine-tuned" in out and "0.917" in out and "0.232" in out
    assert "stage (b)" not in out
    measures = {"detail": 0.25, "psnr": 20.5, "class_detail_error": 0.0081, "class_psnr": 19.0}
    m["stage_b"] = {"upscaler_base": "builtin:shapes-x4", "steps": 400, "bicubic": measures, "base": measures,
                    "finetuned": {**measures, "detail": 0.444},
                    "oracle": {"stage_a": {"subject_fidelity": 0.917, "pres": 0.0},
                               "bicubic": {"subject_fidelity": 0.875, "pres": 0.0},
                               "base": {"subject_fidelity": 0.5, "pres": 0.0},
                               "finetuned": {"subject_fidelity": 0.833, "pres": 0.083}}}
    out = _printed(print_demo, m, "striped_heart")
    assert "builtin:shapes-x4 before and after fine-tuning (400 steps)" in out
    assert "0.444" in out and "0.833" in out and "0.083" in out and "stage a: 0.917" in out


def test_results_go_to_stdout_and_nothing_to_stderr(capsys):
    figures = {"subject_fidelity": 0.5, "prompt_fidelity": 1.0, "pres": 0.0, "div": 0.1}
    print_demo({**figures, "base": figures}, "polka_circle")
    out, err = capsys.readouterr()
    assert "polka_circle: base model vs fine-tuned" in out and err == ""
