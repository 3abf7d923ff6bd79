"""``RUN/report.html``, the run page: built whole from the run folder's files each time a verb adds to it
(train, eval, sample, export, merge-lora), so it is the same page whichever wrote it last. Static HTML with
inline SVG charts and images linked by relative paths: it opens from disk, with no server, script or network.
"""

from __future__ import annotations

from pathlib import Path

from dbooth.runpage import PAGE_FILE
from dbooth.runpage.eval_view import eval_section
from dbooth.runpage.files_view import files_section, glossary_section, samples_section
from dbooth.runpage.html_bits import esc
from dbooth.runpage.run_folder import RunFolder, read_run_folder
from dbooth.runpage.sections import settings_section, summary_section, training_section, validation_section
from dbooth.util.fsutil import atomic_write_text

# in page order: (id, builder); a builder returns "" when its data does not exist
SECTIONS = (("summary", summary_section), ("settings", settings_section), ("training", training_section),
            ("validation", validation_section), ("evaluation", eval_section), ("samples", samples_section),
            ("files", files_section), ("metrics", glossary_section))
TITLES = {"summary": "Did it work?", "settings": "Settings", "training": "Training", "validation": "Validation",
          "evaluation": "Evaluation", "samples": "Samples", "files": "Files", "metrics": "Figures explained"}

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.1em}h1+p{margin-top:0;color:#555}
nav{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ddd;z-index:1}
nav a{margin-right:1em;color:#2f6db5;text-decoration:none}
section{margin:1.6em 0}h2{border-bottom:2px solid #eee;padding-bottom:.2em}
.verdict{font-size:1.15em;padding:.6em .9em;border-left:6px solid;border-radius:3px}
.verdict.ok{background:#eaf6ea;border-color:#2a8a2a}.verdict.warn{background:#fff5e0;border-color:#d99a1b}
.verdict.bad{background:#fde8e8;border-color:#c33}.verdict.info{background:#eaf0f8;border-color:#2f6db5}
p.why{margin:.6em 0 .1em}
pre{background:#f4f4f4;padding:.5em .8em;overflow-x:auto;margin:.2em 0}
pre.cmd{border-left:3px solid #2f6db5}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
table.figures td,table.figures th{text-align:right}table.figures td:first-child{text-align:left}
th.best{background:#dfd}table.settings td:first-child{white-space:nowrap;color:#555}
table.grid td{text-align:center;white-space:nowrap}table.grid td:first-child{text-align:left;white-space:normal;
min-width:9em;max-width:14em}
svg.loss-curve{width:100%;max-width:980px;height:auto}
table.grid img{margin:1px}
table.files td:nth-child(4){white-space:nowrap;text-align:right}ul.loads{margin:.3em 0;padding-left:1.2em}
.scroll{overflow-x:auto}img{max-width:100%;height:auto;vertical-align:top}img.px{image-rendering:pixelated}
.panels{display:flex;flex-wrap:wrap;gap:8px}.note{color:#666;font-size:.92em}
dt{font-weight:600;margin-top:.4em}dd{margin-left:1.2em}
"""


def render(r: RunFolder) -> str:
    """The whole page for the run ``r``."""
    built = [(key, builder(r)) for key, builder in SECTIONS]
    built = [(key, html) for key, html in built if html]
    nav = " ".join(f'<a href="#{key}">{TITLES[key]}</a>' for key, _ in built)
    where = f"workspace {r.workspace.resolve()}" if r.workspace is not None else str(r.dir.resolve())
    title = f"dbooth run {r.run.id}"
    return "\n".join([
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{esc(r.info.get('identifier', ''))} {esc(r.info.get('class_noun', ''))} on "
        f"{esc(r.info.get('base_model', '?'))}; {esc(where)}. This page is rewritten by each dbooth command that "
        "adds to the run.</p>",
        f"<nav>{nav}</nav>",
        *[html for _, html in built],
        "</body></html>",
        "",
    ])


def write_run_page(run_dir: Path) -> Path:
    """Write ``RUN/report.html`` from the run folder's files (atomically) and return its path."""
    r = read_run_folder(Path(run_dir))
    path = r.dir / PAGE_FILE
    atomic_write_text(path, render(r))
    return path


def refresh_run_page(run_dir: Path, reporter=None) -> Path | None:
    """``write_run_page`` for a verb that has finished its own work: the page is a view of the files, so a
    failure to write it is a warning (with a ``reporter``), never the verb's error. None when not written."""
    try:
        return write_run_page(run_dir)
    except Exception as exc:  # noqa: BLE001 - whatever breaks the page must not break a finished training or eval
        if reporter is not None:
            first = (str(exc).splitlines() or [""])[0][:200]
            reporter.warn(f"could not write {Path(run_dir) / PAGE_FILE}: {type(exc).__name__}: {first}")
        return None
