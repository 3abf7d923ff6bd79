"""The evaluation's grids: one row of samples per prompt and model, saved under names the run page reads back,
and only those of the models it shows (base, best, final) kept. The page itself: tests/runpage/test_eval_view.py."""

from PIL import Image

from dbooth.eval import report


def _data(best="step-000200") -> dict:
    data = {"prompt_list": ["a sks dog in the jungle", "a sks dog <on> the \"beach\""],
            "metrics": {"base": {}, "step-000100": {}, "step-000200": {}, "final": {}}}
    if best is not False:
        data["best"] = {"checkpoint": best, "rule": "...", "eligible": []}
    return data


def test_the_page_shows_base_best_and_final():
    assert report.shown_models(_data()) == ["base", "step-000200", "final"]
    assert report.shown_models(_data(best="final")) == ["base", "final"]
    assert report.shown_models(_data(best=None)) == ["base", "final"]
    assert report.shown_models(_data(best=False)) == ["base", "final"]
    assert report.step_of("step-000200") == 200 and report.step_of("final") is None


def test_grids_are_one_row_per_prompt_named_by_its_number(tmp_path):
    data = _data()
    images = {p: [Image.new("RGB", (8, 8), c) for c in ("red", "blue")] for p in data["prompt_list"]}
    saved = report.save_grids(tmp_path, "final", images, [Image.new("RGB", (8, 8))] * 3)
    assert saved == {data["prompt_list"][0]: "eval/grid-01-final.png", data["prompt_list"][1]: "eval/grid-02-final.png",
                     report.CLASS: "eval/grid-class-final.png"}
    assert Image.open(tmp_path / saved[data["prompt_list"][1]]).size == (16, 8)
    assert Image.open(tmp_path / saved[report.CLASS]).size == (24, 8)
    assert report.grid_file(2, "step-000100") == "eval/grid-02-step-000100.png"


def test_the_checkpoints_the_page_does_not_show_keep_no_grids(tmp_path):
    data = _data()
    images = {p: [Image.new("RGB", (8, 8), "red")] for p in data["prompt_list"]}
    grids = {m: report.save_grids(tmp_path, m, images, images[data["prompt_list"][0]]) for m in data["metrics"]}
    (tmp_path / "eval" / "grid-01-step-000050.png").write_bytes(b"left by an earlier eval")
    report.prune_grids(tmp_path, data, grids)
    kept = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert kept == sorted(rel.split("/")[1] for m in ("base", "step-000200", "final") for rel in grids[m].values())
    assert not any("step-000100" in name or "step-000050" in name for name in kept)
