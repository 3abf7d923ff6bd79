"""The report's pieces as pure functions: the curve, the table, the grids' links, replacing the section."""

import re
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from dbooth.eval import report
from dbooth.eval.report import BOTTOM, END, HEIGHT, LEFT, RIGHT, START, TOP, WIDTH

SVG = "{http://www.w3.org/2000/svg}"


def _data(best="step-000200", oracle=True) -> dict:
    metrics = {
        "base": {"dino": 0.1012, "clip_i": 0.5533, "clip_t": 0.3104, "pres": 0.2001, "div_dino": 0.4417},
        "step-000100": {"dino": 0.3521, "clip_i": 0.6611, "clip_t": 0.3021, "pres": 0.2303, "div_dino": 0.3902},
        "step-000200": {"dino": 0.5008, "clip_i": 0.7123, "clip_t": 0.2950, "pres": 0.2455, "div_dino": 0.3311},
        "final": {"dino": 0.6204, "clip_i": 0.7789, "clip_t": 0.2605, "pres": 0.3012, "div_dino": None},
    }
    data = {
        "run": "20260101-000000-full", "created": "2026-01-01T00:00:00", "prompts": "dreambench:objects",
        "prompt_list": ["a sks dog in the jungle", "a sks dog <on> the \"beach\""], "class_prompt": "a photo of a dog",
        "images_per_prompt": 2, "class_images": 2, "seed": 0, "encoders": {"dino": "d", "clip": "c"},
        "div": "div_dino: ...", "metrics": metrics,
    }
    if oracle:
        data["oracle"] = {"subject": "striped_heart", "metrics": {
            n: {"subject_fidelity": 0.11 + i / 10, "pres": 0.0525 + i / 100, "div": 0.2071} for i, n in enumerate(metrics)}}
    if best is not False:
        data["best"] = {"checkpoint": best, "rule": "highest dino with clip_t >= 0.2904", "eligible": []}
    return data


def _points(svg: str) -> dict[str, tuple[float, float, set]]:
    root = ET.fromstring(svg)
    return {c.get("data-name"): (float(c.get("cx")), float(c.get("cy")), set(c.get("class").split()))
            for c in root.iter(SVG + "circle")}


def test_curve_has_one_point_per_scored_step_at_its_coordinates():
    data = _data()
    metrics = data["metrics"]
    points = _points(report.curve_svg(metrics, "step-000200"))
    assert list(points) == list(metrics)
    xs, ys = [m["clip_t"] for m in metrics.values()], [m["dino"] for m in metrics.values()]
    for name, (cx, cy, _) in points.items():
        m = metrics[name]
        assert cx == pytest.approx(LEFT + (m["clip_t"] - min(xs)) / (max(xs) - min(xs)) * (WIDTH - RIGHT - LEFT), abs=0.01)
        assert cy == pytest.approx(HEIGHT - BOTTOM - (m["dino"] - min(ys)) / (max(ys) - min(ys)) * (HEIGHT - BOTTOM - TOP),
                                   abs=0.01)
    # higher DINO is higher on the page, higher CLIP-T further right
    assert points["final"][1] < points["base"][1] and points["base"][0] > points["final"][0]
    assert "base" in points["base"][2] and "best" in points["step-000200"][2]
    assert "step" in points["step-000100"][2]
    labels = [t.text for t in ET.fromstring(report.curve_svg(metrics)).iter(SVG + "text")]
    assert {"base", "step 100", "step 200", "final"} <= set(labels)


def test_curve_of_equal_values_and_missing_ones():
    same = {"base": {"dino": 0.5, "clip_t": 0.3}, "final": {"dino": 0.5, "clip_t": 0.3}, "x": {"dino": None, "clip_t": 1}}
    points = _points(report.curve_svg(same))
    assert list(points) == ["base", "final"]
    assert points["base"][:2] == ((LEFT + WIDTH - RIGHT) / 2, (HEIGHT - BOTTOM + TOP) / 2)
    assert report.curve_svg({}) == ""


def test_section_holds_every_figure_of_eval_json_and_marks_the_best():
    data = _data()
    section = report.eval_section(data, {})
    values = [v for m in data["metrics"].values() for v in m.values()]
    values += [v for m in data["oracle"]["metrics"].values() for v in m.values()]
    for v in values:
        assert (f"{v:.4f}" if v is not None else "<td>-</td>") in section
    assert "step-000200 (best)" in section and "highest dino with clip_t &gt;= 0.2904" in section
    assert "oracle subject_fidelity" in section and "<svg" in section
    linked = report.eval_section(data, {"base": {data["prompt_list"][1]: "eval/grid-02-base.png"}})
    assert '<h3>a sks dog &lt;on&gt; the &quot;beach&quot;</h3>' in linked  # prompts are escaped

    plain = report.eval_section(_data(best=False, oracle=False), {})
    assert "<svg" not in plain and "(best)" not in plain and "oracle" not in plain
    assert "none passes the rule" in report.eval_section(_data(best=None), {})


def test_section_links_the_grids_it_is_given_for_base_best_and_final(tmp_path):
    data = _data()
    assert report.shown_models(data) == ["base", "step-000200", "final"]
    assert report.shown_models(_data(best="final")) == ["base", "final"]
    assert report.shown_models(_data(best=False)) == ["base", "final"]
    images = {p: [Image.new("RGB", (8, 8), c) for c in ("red", "blue")] for p in data["prompt_list"]}
    grids = {m: report.save_grids(tmp_path, m, images, images[data["prompt_list"][0]])
             for m in ("base", "step-000100", "step-000200", "final")}
    assert Image.open(tmp_path / grids["final"][data["prompt_list"][1]]).size == (16, 8)
    path = report.write_report(tmp_path, data, grids)
    page = path.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 3 * (len(data["prompt_list"]) + 1)
    assert all((tmp_path / s).is_file() for s in srcs)
    assert not any("step-000100" in s for s in srcs)
    # the checkpoint the page does not show keeps no grids
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(s.split("/")[1] for s in srcs)

    (tmp_path / grids["final"]["class"]).unlink()
    page = report.write_report(tmp_path, data, grids).read_text()
    assert grids["final"]["class"] not in page and grids["base"]["class"] in page


def test_rewriting_replaces_the_section_and_keeps_the_rest_of_the_page(tmp_path):
    data = _data()
    first = report.merge_section(None, report.eval_section(data, {}), data["run"])
    assert first.count(START) == 1 and first.startswith("<!doctype html>") and first.rstrip().endswith("</html>")
    data["metrics"]["final"]["dino"] = 0.9999
    second = report.merge_section(first, report.eval_section(data, {}), data["run"])
    assert second.count(START) == second.count(END) == 1 and "0.9999" in second and "0.6204" not in second

    other = "<html><body><h1>training</h1><p>loss curve</p></body></html>"
    merged = report.merge_section(other, report.eval_section(data, {}), data["run"])
    assert merged.startswith("<html><body><h1>training</h1><p>loss curve</p>") and merged.endswith("</body></html>")
    again = report.merge_section(merged, report.eval_section(data, {}), data["run"])
    assert again == merged

    (tmp_path / "report.html").write_text(other)
    report.write_report(tmp_path, data, {})
    report.write_report(tmp_path, data, {})
    page = (tmp_path / "report.html").read_text()
    assert page.count('id="evaluation"') == 1 and "<h1>training</h1>" in page
