"""dbooth.export.clients: the one table of which client takes which format, and README kept in step with it."""

from __future__ import annotations

import re
from pathlib import Path

from dbooth.export.clients import CLIENTS, EXPORT_FORMATS, FORMATS, clients_of, clients_table, load_lines

README = Path(__file__).resolve().parents[2] / "README.md"


def table_after(text: str, heading: str) -> list[str]:
    """The rows of the first Markdown table after ``heading``."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def formats_named(rows: list[str]) -> set[str]:
    """Formats in the "full run" and "LoRA run" columns of a client table (header rows skipped)."""
    cells = [cell for row in rows[2:] for cell in row.split("|")[2:4]]
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


def test_every_format_is_loaded_by_a_known_client():
    assert FORMATS == tuple(EXPORT_FORMATS)
    for fmt, spec in EXPORT_FORMATS.items():
        assert spec.name == fmt and spec.title
        assert clients_of(fmt), fmt
        assert set(spec.loads_in) <= set(CLIENTS), fmt
    assert formats_named(clients_table().splitlines()) == set(FORMATS)


def test_readme_table_is_the_exporters_table():
    """Adding a format (or a client) to the exporter or to README alone fails here."""
    readme = README.read_text(encoding="utf-8")
    rows = table_after(readme, "## Which file for which client")
    assert rows == clients_table().splitlines()
    assert formats_named(rows) == set(FORMATS)
    export_row = next(line for line in readme.splitlines() if line.startswith("| `dbooth export"))
    assert re.search(r"--format (\S+)", export_row).group(1).split("\\|") == list(FORMATS)


def test_comfyui_and_a1111_take_lora_kohya_not_the_diffusers_lora():
    for client in ("ComfyUI", "AUTOMATIC1111/Forge"):
        assert client not in clients_of("lora")
        assert client in clients_of("lora-kohya") and client in clients_of("single-file")
    note = load_lines("lora", "x.safetensors")[-1]
    assert note.startswith("note: ")
    assert "ComfyUI" in note and "AUTOMATIC1111" in note and "--format lora-kohya" in note


def test_load_lines_name_the_file_written():
    lines = load_lines("lora-kohya", "/out/subject.safetensors")
    assert lines[0] == 'diffusers: pipe.load_lora_weights("/out/subject.safetensors")'
    assert "ComfyUI: copy to ComfyUI/models/loras/, apply it with a Load LoRA node" in lines
    assert "AUTOMATIC1111/Forge: copy to stable-diffusion-webui/models/Lora/, prompt with <lora:subject:1>" in lines
    assert [line.split(":")[0] for line in lines] == list(CLIENTS)
    assert not any("`" in line for line in lines)

    folder = load_lines("diffusers", "/out/my.model", markdown=True)
    assert folder == [
        'diffusers: `DiffusionPipeline.from_pretrained("/out/my.model")`',
        "InvokeAI: import `/out/my.model` in the Model Manager",
    ]


def test_load_lines_name_the_runs_pipeline_class():
    lines = load_lines("single-file", "/out/xl.safetensors", pipeline="StableDiffusionXLPipeline")
    assert lines[0] == 'diffusers: StableDiffusionXLPipeline.from_single_file("/out/xl.safetensors")'
