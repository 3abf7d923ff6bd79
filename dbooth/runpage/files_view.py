"""The run page's lower sections: the samples drawn from the run, the files it wrote with the code or client
steps that load them, and what each figure on the page means."""

from __future__ import annotations

from dbooth.runpage import glossary
from dbooth.runpage.html_bits import code, esc, img, link, marked, section, table
from dbooth.runpage.run_files import (Item, checkpoint_items, export_items, final_item, merged_items, record_items)
from dbooth.runpage.run_folder import RunFolder
from dbooth.runpage.run_samples import find_samples
from dbooth.util.diskspace import human

SAMPLE_WIDTH = 512  # pixels at most for a sample set


def samples_section(r: RunFolder) -> str:
    if r.workspace is None:
        return ""
    sets, total = find_samples(r.workspace / "samples", r.run.id)
    if not sets:
        return ""
    body, scale = [], 2 if _resolution(r) < 256 else 1
    for s in sets:
        title = f"\u201c{s.prompt}\u201d" if s.prompt else s.folder.name
        weights = s.label.replace(r.run.id, "", 1).lstrip("@+") or "final weights"
        body.append(f"<h3>{esc(title)}</h3><p class=note>{esc(weights)}, seeds "
                    f"{esc(', '.join(map(str, s.seeds)) or '-')}: {link(s.folder, r.dir, s.folder.name + '/')}</p>")
        pictures = [s.grid] if s.grid is not None else s.images
        body.append("".join(img(p, r.dir, s.prompt or p.name, scale=scale, most=SAMPLE_WIDTH) for p in pictures))
    more = f"<p class=note>The newest {len(sets)} of {total} sample sets; the rest are in samples/.</p>" \
        if total > len(sets) else ""
    return section("samples", "Samples", *body, more)


def _resolution(r: RunFolder) -> int:
    return r.manifest.train.resolution if r.manifest is not None else 512


def _loads(item: Item) -> str:
    """The item's loading lines as a list."""
    if not item.loads:
        return ""
    return "<ul class=loads>" + "".join(f"<li>{marked(line)}</li>" for line in item.loads) + "</ul>"


def python_snippet(r: RunFolder) -> str:
    """Python that samples the final weights without dbooth's CLI."""
    base, pipeline = r.info.get("base_model", "BASE"), r.pipeline
    final = r.dir.resolve() / "final"
    prompt = (r.info.get("instance_prompt") or "a photo of sks dog") + " on the beach"
    if r.lora:
        if base.startswith("builtin:"):
            head = ["from dbooth.families.loading import load_pipeline  # dbooth's own built-in model",
                    f"pipe = load_pipeline({base!r})"]
        else:
            how = "from_single_file" if base.endswith((".safetensors", ".ckpt")) else "from_pretrained"
            head = [f"from diffusers import {pipeline}", f"pipe = {pipeline}.{how}({base!r})"]
        lines = head + [f"pipe.load_lora_weights({str(final)!r}, weight_name='pytorch_lora_weights.safetensors')"]
    else:
        lines = [f"from diffusers import {pipeline}", f"pipe = {pipeline}.from_pretrained({str(final)!r})"]
    return code("\n".join(lines + [f"image = pipe(prompt={prompt!r}).images[0]"]))  # klein takes an image first


def files_section(r: RunFolder) -> str:
    final = final_item(r.dir, r.lora, r.pipeline)
    groups = [("Final weights", [final] if final else []),
              ("Checkpoints", checkpoint_items(r.run.checkpoints(), r.run.id)),
              ("Exports", export_items(r.dir, r.pipeline)),
              ("Merged", merged_items(r.dir, r.pipeline)),
              ("Records", record_items(r.dir, r.workspace))]
    rows = []
    for group, items in groups:
        for item in items:
            rows.append([esc(group), link(item.path, r.dir, item.path.relative_to(r.dir).as_posix()
                                          + ("/" if item.path.is_dir() else "")),
                         marked(item.what) + _loads(item), human(item.size)])
    body = [f"<p>In {esc(str(r.dir.resolve()))}:</p>", table(["", "file", "what it is, how to load it", "size"],
                                                              rows, "files")]
    if final is not None and not r.upscaler:
        body += ["<h3>Load the final weights in Python</h3>", python_snippet(r)]
    return section("files", "Files written", *body)


def glossary_section(r: RunFolder) -> str:
    keys = [k for k in ("loss", "prior_loss", "lr") if any(row.get(k) is not None for row in r.history)]
    judge = "encoders"
    if r.eval is not None:
        judge = r.eval.get("judge") or ("encoders" if r.eval.get("encoders") else "oracle")
        keys += [k for m in r.eval["metrics"].values() for k in m]
        keys += [k for m in ((r.eval.get("oracle") or {}).get("metrics") or {}).values() for k in m]
    items = glossary.glossary_items(keys, judge)
    if not items:
        return ""
    lines = "".join(f"<dt>{esc(name)}</dt><dd>{esc(text)}</dd>" for name, text in items)
    return section("metrics", "What the figures mean", f"<dl>{lines}</dl>")
