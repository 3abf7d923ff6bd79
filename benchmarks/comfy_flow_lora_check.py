"""Does ComfyUI load dbooth's FLUX.1 and SD 3.5 LoRA exports whole, and apply the delta diffusers applies?

Two phases in two interpreters, because ComfyUI and dbooth want different environments:

1. ``make`` (dbooth's venv): builds LoRAs at the published widths (FLUX.1-dev 3072, SD 3.5 Medium 1536, CLIP-L 768,
   CLIP-G 1280) with random factors, alpha != rank, a per-module rank (rank_pattern) and rsLoRA, and writes them
   with dbooth's own writers: ``save_scaled_lora_file`` (``--format lora``) and ``save_kohya_lora``
   (``--format lora-kohya``, FLUX). Module names are those of the diffusers / transformers models (what peft
   names a run's adapters). Then diffusers loads each file as a user would (``pipe.load_lora_weights``) into a
   stand-in pipeline (full-width transformer with block 0 only, full CLIP encoders; weights allocated, never
   written), and the A, B and scaling peft holds per module are saved: diffusers' delta is ``scaling * B @ A``.
2. ``comfy`` (a separate venv with ComfyUI's requirements): ComfyUI detects a FLUX.1-dev / SD 3.5 Medium model
   from a key set (``model_detection.model_config_from_unet``) and builds it on the meta device (full depth, no
   memory), builds the matching CLIP models on meta, and runs its own LoRA path as ``sd.load_lora_for_models``
   does: ``model_lora_keys_unet`` + ``model_lora_keys_clip`` -> ``lora_convert.convert_lora`` -> ``load_lora``,
   catching its "lora key not loaded" warnings; patches go to keys as ``ModelPatcher.add_patches`` files them and
   each patched weight's delta is ``comfy.lora.calculate_weight`` (strength 1) on a zero weight. Those deltas are
   compared with diffusers' per-module deltas placed in the fused weights at the offsets of BFL's / MMDiT's
   layout (``place``); rows no diffusers module changes must stay zero.

Files: flux-lora / flux-lora-kohya (FLUX "wide" preset on double and single block 0, CLIP-L layers 0 and 11),
flux-lora-attention / flux-lora-kohya-attention (the default "attention" preset: single block linear1 without
its MLP part), sd3-lora (SD 3.5 Medium block 0, "wide" + attn2, CLIP-L and CLIP-G layers first and last), and
probes that are not dbooth output: flux-lora-dora (DoRA magnitudes), flux-lora-te-text_model (CLIP-L keys
renamed under ``text_model.``), flux-lora-unscaled (scale only in ``lora_adapter_metadata``).

Run (ComfyUI source at /tmp/comfyui, a venv with its requirements at /tmp/comfyvenv; ``--stubs``: see its help):

    .venv/bin/python benchmarks/comfy_flow_lora_check.py --comfyui /tmp/comfyui --comfy-python /tmp/comfyvenv/bin/python

Peak ~4 GB of memory, ~5 minutes on 2 cores. ``--json`` writes the per-file figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FLUX_INNER, FLUX_MLP = 3072, 12288
SD3_INNER = 1536

# ---------------------------------------------------------------------------------------------------------------
# Where each diffusers module's delta lands in the original (BFL / MMDiT / CLIP) weights: (ComfyUI state-dict key,
# first row). Fused layouts as the original models define them (and diffusers' single-file converters split them):
# FLUX double block qkv = [q; k; v], single block linear1 = [q; k; v; mlp]; MMDiT x/context qkv = [q; k; v].


def _flux_double(i: int) -> dict:
    b = f"diffusion_model.double_blocks.{i}."
    return {
        "attn.to_q": (b + "img_attn.qkv.weight", 0), "attn.to_k": (b + "img_attn.qkv.weight", FLUX_INNER),
        "attn.to_v": (b + "img_attn.qkv.weight", 2 * FLUX_INNER), "attn.to_out.0": (b + "img_attn.proj.weight", 0),
        "attn.add_q_proj": (b + "txt_attn.qkv.weight", 0), "attn.add_k_proj": (b + "txt_attn.qkv.weight", FLUX_INNER),
        "attn.add_v_proj": (b + "txt_attn.qkv.weight", 2 * FLUX_INNER),
        "attn.to_add_out": (b + "txt_attn.proj.weight", 0),
        "ff.net.0.proj": (b + "img_mlp.0.weight", 0), "ff.net.2": (b + "img_mlp.2.weight", 0),
        "ff_context.net.0.proj": (b + "txt_mlp.0.weight", 0), "ff_context.net.2": (b + "txt_mlp.2.weight", 0),
        "norm1.linear": (b + "img_mod.lin.weight", 0), "norm1_context.linear": (b + "txt_mod.lin.weight", 0),
    }


def _flux_single(i: int) -> dict:
    b = f"diffusion_model.single_blocks.{i}."
    return {
        "attn.to_q": (b + "linear1.weight", 0), "attn.to_k": (b + "linear1.weight", FLUX_INNER),
        "attn.to_v": (b + "linear1.weight", 2 * FLUX_INNER), "proj_mlp": (b + "linear1.weight", 3 * FLUX_INNER),
        "proj_out": (b + "linear2.weight", 0), "norm.linear": (b + "modulation.lin.weight", 0),
    }


def _sd3_block(i: int) -> dict:
    b = f"diffusion_model.joint_blocks.{i}."
    x, c = b + "x_block.", b + "context_block."
    return {
        "attn.to_q": (x + "attn.qkv.weight", 0), "attn.to_k": (x + "attn.qkv.weight", SD3_INNER),
        "attn.to_v": (x + "attn.qkv.weight", 2 * SD3_INNER), "attn.to_out.0": (x + "attn.proj.weight", 0),
        "attn.add_q_proj": (c + "attn.qkv.weight", 0), "attn.add_k_proj": (c + "attn.qkv.weight", SD3_INNER),
        "attn.add_v_proj": (c + "attn.qkv.weight", 2 * SD3_INNER), "attn.to_add_out": (c + "attn.proj.weight", 0),
        "attn2.to_q": (x + "attn2.qkv.weight", 0), "attn2.to_k": (x + "attn2.qkv.weight", SD3_INNER),
        "attn2.to_v": (x + "attn2.qkv.weight", 2 * SD3_INNER), "attn2.to_out.0": (x + "attn2.proj.weight", 0),
        "ff.net.0.proj": (x + "mlp.fc1.weight", 0), "ff.net.2": (x + "mlp.fc2.weight", 0),
        "ff_context.net.0.proj": (c + "mlp.fc1.weight", 0), "ff_context.net.2": (c + "mlp.fc2.weight", 0),
        "norm1.linear": (x + "adaLN_modulation.1.weight", 0),
        "norm1_context.linear": (c + "adaLN_modulation.1.weight", 0),
    }


def place(family: str, component: str, module: str) -> tuple[str, int]:
    """ComfyUI's key and first row for diffusers' ``component.module`` (a KeyError: no place)."""
    parts = module.split(".")
    if component == "transformer" and parts[0] == "transformer_blocks" and family == "sd3":
        return _sd3_block(int(parts[1]))[".".join(parts[2:])]
    if component == "transformer" and parts[0] == "transformer_blocks":
        return _flux_double(int(parts[1]))[".".join(parts[2:])]
    if component == "transformer" and parts[0] == "single_transformer_blocks":
        return _flux_single(int(parts[1]))[".".join(parts[2:])]
    if component in ("text_encoder", "text_encoder_2"):
        clip = "clip_l" if component == "text_encoder" else "clip_g"
        rest = module[len("text_model."):] if module.startswith("text_model.") else module
        return f"{clip}.transformer.text_model.{rest}.weight", 0
    raise KeyError(f"{component}.{module}")

# ---------------------------------------------------------------------------------------------------------------
# phase 1: dbooth + diffusers


def _lora_modules(model, targets, keep) -> dict[str, tuple[int, int]]:
    """peft's matching (name == target or name ends with '.target') over ``model``'s linears: name -> (in, out)."""
    import torch

    out = {}
    for name, mod in model.named_modules():
        matched = any(name == t or name.endswith("." + t) for t in targets)
        if isinstance(mod, torch.nn.Linear) and keep(name) and matched:
            out[name] = (mod.in_features, mod.out_features)
    return out


def _component(name, shapes, config, seed, dora=False):
    import torch
    from dbooth.export.lora_file import LoraComponent

    g = torch.Generator().manual_seed(seed)
    modules, magnitudes = {}, {}
    for m, (i, o) in sorted(shapes.items()):
        r = config.get("rank_pattern", {}).get(m, config["r"])
        modules[m] = (torch.randn(r, i, generator=g) / 4, torch.randn(o, r, generator=g) / 4)
        if dora:
            magnitudes[m] = torch.rand(o, generator=g) + 0.5
    full = {"rank_pattern": {}, "alpha_pattern": {}, "use_rslora": False, "use_dora": dora,
            "target_modules": sorted(shapes), "init_lora_weights": False, **config}
    return LoraComponent(name, modules, full, magnitudes)


def _empty(cls, config):
    """A model of ``cls`` built on meta, then given real (uninitialised, so untouched-page) CPU storage."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls(config) if not hasattr(cls, "from_config") else cls.from_config(config)
    return model.to_empty(device="cpu").eval()


def _flux_pipe(transformer, clip_l):
    from diffusers import FluxPipeline

    return FluxPipeline(scheduler=None, vae=None, text_encoder=clip_l, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=transformer)


def _sd3_pipe(transformer, clip_l, clip_g):
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(transformer=transformer, scheduler=None, vae=None, text_encoder=clip_l,
                                    tokenizer=None, text_encoder_2=clip_g, tokenizer_2=None, text_encoder_3=None,
                                    tokenizer_3=None)


def _diffusers_factors(pipe, names, path: Path, out: Path) -> dict:
    """Load ``path`` with ``pipe.load_lora_weights`` and save peft's (A, B, scaling) per LoRA layer to ``out``."""
    import torch
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import save_file

    pipe.load_lora_weights(str(path), adapter_name="x")
    tensors, scales, counts = {}, {}, {}
    for comp in names:
        model = getattr(pipe, comp)
        counts[comp] = 0
        for mname, mod in model.named_modules():
            if isinstance(mod, LoraLayer) and "x" in mod.lora_A:
                a, b = mod.lora_A["x"].weight.detach().float(), mod.lora_B["x"].weight.detach().float()
                key = f"{comp}.{mname}"
                tensors[key + ".A"], tensors[key + ".B"] = a.clone(), b.clone()
                scales[key] = float(mod.scaling["x"])
                counts[comp] += 1
                if counts[comp] == 1:  # peft's own delta is scaling * B @ A (no fan_in_fan_out here)
                    torch.testing.assert_close(mod.get_delta_weight("x").float(), scales[key] * (b @ a))
    save_file(tensors, str(out), metadata={"scales": json.dumps(scales)})
    pipe.unload_lora_weights()
    return counts


def _truth_vs(factors_path: Path, lora_file) -> float:
    """max |diffusers' delta - scale * up @ down of the LoRA dbooth was given| over every module (inf: a module
    given is missing, or one diffusers made up has a nonzero delta)."""
    from safetensors import safe_open

    worst = 0.0
    with safe_open(str(factors_path), "pt") as f:
        scales = json.loads(f.metadata()["scales"])
        given = {f"{c.name}.{m}": (c, m) for c in lora_file.components.values() for m in c.modules}
        for key, s in scales.items():
            got = s * (f.get_tensor(key + ".B").double() @ f.get_tensor(key + ".A").double())
            if key not in given:  # e.g. a zero-rows part of a fused kohya linear, split back out by diffusers
                worst = max(worst, float("inf") if got.any() else 0.0)
                continue
            comp, m = given[key]
            down, up = comp.modules[m]
            worst = max(worst, (got - comp.scale(m) * (up.double() @ down.double())).abs().max().item())
    return worst if set(given) <= set(scales) else float("inf")


def make(work: Path) -> dict:
    import torch
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dbooth.bench.components_flow import CLIP_G_TEXT, CLIP_L_TEXT, FLUX_DEV_TRANSFORMER, SD35_MEDIUM_TRANSFORMER
    from dbooth.export.kohya import save_kohya_lora
    from dbooth.export.lora_file import LoraFile, save_scaled_lora_file
    from dbooth.families import get_family

    torch.set_num_threads(2)
    info: dict = {"files": {}}
    te_targets = ["q_proj", "k_proj", "v_proj", "out_proj"]  # train.lora.text_encoder_target_modules' default

    def clip_layers(last):  # adapters in the first and last layer
        return lambda n: "layers.0." in n or f"layers.{last}." in n

    # ---- FLUX.1-dev: transformer block 0 of each stream ("wide" preset; "attention", the default, alone), CLIP-L
    flux_tr = _empty(FluxTransformer2DModel, {**FLUX_DEV_TRANSFORMER, "num_layers": 1, "num_single_layers": 1})
    clip_l = _empty(CLIPTextModel, CLIPTextConfig(**CLIP_L_TEXT))
    block0 = lambda n: "blocks.0." in n  # noqa: E731
    te_shapes = _lora_modules(clip_l, te_targets, clip_layers(11))
    # scales 1.25, 5/3 (to_out.0 at rank 3) and 2/3: alpha != rank everywhere, and not all exact in binary
    flux_tr_cfg = {"r": 4, "lora_alpha": 5.0, "rank_pattern": {"transformer_blocks.0.attn.to_out.0": 3}}
    te_cfg = {"r": 3, "lora_alpha": 2.0}
    wide = _lora_modules(flux_tr, get_family("flux").lora_targets(["wide"]), block0)
    attention = _lora_modules(flux_tr, get_family("flux").lora_targets(["attention"]), block0)
    flux = LoraFile(Path("in-memory"), {
        "transformer": _component("transformer", wide, flux_tr_cfg, 1),
        "text_encoder": _component("text_encoder", te_shapes, te_cfg, 2)}, {})
    flux_att = LoraFile(Path("in-memory"), {"transformer": _component("transformer", attention, flux_tr_cfg, 6)}, {})
    names = ("flux-lora", "flux-lora-kohya", "flux-lora-attention", "flux-lora-kohya-attention", "sd3-lora",
             "flux-lora-dora", "flux-lora-te-text_model", "flux-lora-unscaled")
    paths = {n: work / (n.replace("-", "_") + ".safetensors") for n in names}
    save_scaled_lora_file(flux, paths["flux-lora"])
    save_kohya_lora(flux, paths["flux-lora-kohya"], family="flux", unet=FLUX_DEV_TRANSFORMER)
    save_scaled_lora_file(flux_att, paths["flux-lora-attention"])
    save_kohya_lora(flux_att, paths["flux-lora-kohya-attention"], family="flux", unet=FLUX_DEV_TRANSFORMER)
    # DoRA (train.lora.use_dora): the same modules with magnitude vectors (written by --format lora only)
    dora = LoraFile(Path("in-memory"), {
        "transformer": _component("transformer", wide, flux_tr_cfg, 1, dora=True),
        "text_encoder": _component("text_encoder", te_shapes, te_cfg, 2, dora=True)}, {})
    save_scaled_lora_file(dora, paths["flux-lora-dora"])
    # probe for a fix: the FLUX `lora` file with CLIP-L keys under text_model. (as transformers<5 named them)
    from safetensors import safe_open

    with safe_open(str(paths["flux-lora"]), "pt") as f:
        meta = f.metadata()
    t = {("text_encoder.text_model." + k[len("text_encoder."):] if k.startswith("text_encoder.encoder.") else k): v
         for k, v in load_file(str(paths["flux-lora"])).items()}
    save_file(t, str(paths["flux-lora-te-text_model"]), metadata=meta)
    # probe for question (i): the same LoRA with its scale only in lora_adapter_metadata, B unscaled (what
    # save_lora_file keeps for the other families' `lora` files)
    from dbooth.export.lora_file import METADATA_KEY

    raw = {f"{c.name}.{k}": v for c in flux.components.values() for k, v in c.peft_state_dict().items()}
    save_file(raw, str(paths["flux-lora-unscaled"]),
              metadata={"format": "pt", METADATA_KEY: json.dumps(flux.adapter_metadata(), sort_keys=True)})

    pipe = _flux_pipe(flux_tr, clip_l)
    for name, given in (("flux-lora", flux), ("flux-lora-kohya", flux), ("flux-lora-attention", flux_att),
                        ("flux-lora-kohya-attention", flux_att), ("flux-lora-te-text_model", flux),
                        ("flux-lora-unscaled", flux)):
        fac = work / f"{name}.factors.safetensors"
        counts = _diffusers_factors(pipe, ("transformer", "text_encoder"), paths[name], fac)
        info["files"][name] = {"path": str(paths[name]), "diffusers_modules": counts,
                               "expected_modules": {c.name: len(c.modules) for c in given.components.values()},
                               "max_abs_diffusers_vs_truth": _truth_vs(fac, given)}
    del pipe, flux_tr, clip_l

    # ---- SD 3.5 Medium: transformer block 0 ("wide" preset + the MMDiT-X self-attention attn2), CLIP-L, CLIP-G
    sd3_tr = _empty(SD3Transformer2DModel, {**SD35_MEDIUM_TRANSFORMER, "num_layers": 2, "dual_attention_layers": (0,)})
    clip_l = _empty(CLIPTextModelWithProjection, CLIPTextConfig(**CLIP_L_TEXT))
    clip_g = _empty(CLIPTextModelWithProjection, CLIPTextConfig(**CLIP_G_TEXT))
    targets = get_family("sd3").lora_targets(["wide"]) + ["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]
    sd3 = LoraFile(Path("in-memory"), {
        "transformer": _component("transformer",
                                  _lora_modules(sd3_tr, targets, lambda n: n.startswith("transformer_blocks.0.")),
                                  {"r": 4, "lora_alpha": 10.0, "use_rslora": True}, 3),
        "text_encoder": _component("text_encoder", _lora_modules(clip_l, te_targets, clip_layers(11)), te_cfg, 4),
        "text_encoder_2": _component("text_encoder_2", _lora_modules(clip_g, te_targets, clip_layers(31)), te_cfg, 5)},
        {})
    save_scaled_lora_file(sd3, paths["sd3-lora"])
    pipe = _sd3_pipe(sd3_tr, clip_l, clip_g)
    fac = work / "sd3-lora.factors.safetensors"
    counts = _diffusers_factors(pipe, ("transformer", "text_encoder", "text_encoder_2"), paths["sd3-lora"], fac)
    info["files"]["sd3-lora"] = {"path": str(paths["sd3-lora"]), "diffusers_modules": counts,
                                 "expected_modules": {c.name: len(c.modules) for c in sd3.components.values()},
                                 "max_abs_diffusers_vs_truth": _truth_vs(fac, sd3)}
    info["files"]["flux-lora-dora"] = {"path": str(paths["flux-lora-dora"])}
    return info


# ---------------------------------------------------------------------------------------------------------------
# phase 2: ComfyUI


def comfy(work: Path, comfyui: str, stubs: str | None) -> dict:
    sys.path[:0] = [p for p in (stubs, comfyui) if p]
    sys.argv = [sys.argv[0], "--cpu"]
    import logging

    import comfy.options

    comfy.options.enable_args_parsing()
    import torch

    import comfy.lora
    import comfy.lora_convert
    import comfy.model_detection
    import comfy.text_encoders.flux
    import comfy.text_encoders.sd3_clip
    import comfy.utils

    torch.set_num_threads(2)
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731

    # FLUX.1-dev and SD 3.5 Medium as ComfyUI detects them from a checkpoint's keys, built on meta at full depth
    flux_keys = {"img_in.weight": meta(FLUX_INNER, 64), "double_blocks.0.img_attn.norm.key_norm.scale": meta(128),
                 "vector_in.in_layer.weight": meta(FLUX_INNER, 768),
                 "guidance_in.in_layer.weight": meta(FLUX_INNER, 256)}
    flux_keys |= {f"double_blocks.{i}.img_attn.qkv.weight": meta(3 * FLUX_INNER, FLUX_INNER) for i in range(19)}
    flux_keys |= {f"single_blocks.{i}.linear1.weight": meta(3 * FLUX_INNER + FLUX_MLP, FLUX_INNER) for i in range(38)}
    sd3_keys = {"x_embedder.proj.weight": meta(SD3_INNER, 16, 2, 2), "joint_blocks.0.context_block.attn.qkv.weight":
                meta(3 * SD3_INNER, SD3_INNER), "joint_blocks.0.context_block.attn.ln_q.weight": meta(64),
                "y_embedder.mlp.0.weight": meta(SD3_INNER, 2048), "context_embedder.weight": meta(SD3_INNER, 4096),
                "pos_embed": meta(1, 384 * 384, SD3_INNER), "final_layer.linear.weight": meta(64, SD3_INNER)}
    sd3_keys |= {f"joint_blocks.{i}.x_block.attn2.qkv.weight": meta(3 * SD3_INNER, SD3_INNER) for i in range(13)}

    def build(keys, clip_cls):
        config = comfy.model_detection.model_config_from_unet(keys, "")
        model = config.get_model({}, "", device="meta")
        dm = {k[len("diffusion_model."):]: v for k, v in model.state_dict().items() if k.startswith("diffusion_model.")}
        again = comfy.model_detection.model_config_from_unet(dm, "")  # its full key set detects as the same model
        assert type(again) is type(config) and again.unet_config == config.unet_config
        return config, model, clip_cls(device="meta")

    models = {"flux": build(flux_keys, comfy.text_encoders.flux.flux_clip()),
              "sd3": build(sd3_keys, comfy.text_encoders.sd3_clip.sd3_clip(clip_l=True, clip_g=True, t5=True))}

    class Catch(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    report = {}
    names = ("flux-lora", "flux-lora-kohya", "flux-lora-attention", "flux-lora-kohya-attention", "sd3-lora",
             "flux-lora-dora", "flux-lora-te-text_model", "flux-lora-unscaled")
    for name in names:
        family = "sd3" if name.startswith("sd3") else "flux"
        config, model, clip = models[family]
        unet_sd, clip_sd = model.state_dict(), clip.state_dict()
        path = work / (name.replace("-", "_") + ".safetensors")
        lora = comfy.utils.load_torch_file(str(path), safe_load=True)
        n_file = len(lora)
        # comfy.sd.load_lora_for_models: key maps for both models, convert, load, then each patcher's add_patches
        key_map = comfy.lora.model_lora_keys_unet(model, {})
        key_map = comfy.lora.model_lora_keys_clip(clip, key_map)
        lora = comfy.lora_convert.convert_lora(lora)
        catch = Catch()
        logging.getLogger().addHandler(catch)
        try:
            loaded = comfy.lora.load_lora(lora, key_map)
        finally:
            logging.getLogger().removeHandler(catch)
        not_loaded = sorted(m[len("lora key not loaded: "):] for m in catch.messages
                            if m.startswith("lora key not loaded: "))
        # as ModelPatcher.add_patches files them: key -> [(strength, patch, strength_model, offset, function)]
        patches: dict[str, list] = {}
        dropped = []
        for k, adapter in loaded.items():
            key, offset, fn = (k, None, None) if isinstance(k, str) else (k[0], k[1], k[2] if len(k) > 2 else None)
            if key in unet_sd or key in clip_sd:
                patches.setdefault(key, []).append((1.0, adapter, 1.0, offset, fn))
            else:
                dropped.append(key)
        entry = {"file_keys": n_file, "file_keys_mapped": n_file - len(not_loaded), "not_loaded": not_loaded,
                 "patched_weights": len(patches), "patches": len(loaded), "patches_without_weight": dropped,
                 "by_model": {"unet": sum(k in unet_sd for k in patches), "clip": sum(k in clip_sd for k in patches)}}
        fac = work / f"{name}.factors.safetensors"
        if fac.exists():
            entry |= _compare(fac, family, patches, unet_sd, clip_sd)
        report[name] = entry
    return report


def _compare(fac: Path, family: str, patches: dict, unet_sd: dict, clip_sd: dict) -> dict:
    """ComfyUI's delta per patched weight against diffusers' per-module deltas placed in the same weight."""
    import torch
    from safetensors import safe_open

    import comfy.lora

    want: dict[str, list] = {}  # key -> [(row, A, B, scaling, module)]
    unplaced = []
    with safe_open(str(fac), "pt") as f:
        scales = json.loads(f.metadata()["scales"])
        for module, s in scales.items():
            comp, _, m = module.partition(".")
            try:
                key, row = place(family, comp, m)
            except KeyError:
                unplaced.append(module)
                continue
            want.setdefault(key, []).append((row, f.get_tensor(module + ".A"), f.get_tensor(module + ".B"), s, module))
    worst, worst_rel, worst_key, missing, extra = 0.0, 0.0, None, [], []
    for key in sorted(set(want) | set(patches)):
        if key not in patches:
            missing.append(key)
            continue
        if key not in want:
            extra.append(key)
        shape = (unet_sd.get(key) if key in unet_sd else clip_sd[key]).shape
        got = comfy.lora.calculate_weight(patches[key], torch.zeros(shape, dtype=torch.float32), key,
                                          intermediate_dtype=torch.float32)
        diff, ref_max = 0.0, 0.0
        for row, a, b, s, _ in want.get(key, []):  # diffusers' delta, in fp32 as peft computes it
            ref = s * (b @ a)
            rows = got[row: row + b.shape[0]]
            diff = max(diff, (rows - ref).abs().max().item())
            ref_max = max(ref_max, ref.abs().max().item())
            rows.zero_()
        diff = max(diff, got.abs().max().item())  # rows no diffusers module changes must be left alone
        if diff > worst:
            worst, worst_key = diff, key
        worst_rel = max(worst_rel, diff / max(ref_max, 1e-30))
        del got
    return {"diffusers_modules": len(scales), "compared_weights": len(set(want) & set(patches)),
            "max_abs_delta_diff": worst, "max_rel_delta_diff": worst_rel, "worst_weight": worst_key,
            "diffusers_weights_comfy_left_unpatched": missing, "comfy_weights_diffusers_left_alone": extra,
            "diffusers_modules_without_place": unplaced}


# ---------------------------------------------------------------------------------------------------------------


def _print(made: dict, checked: dict) -> None:
    for name, c in checked.items():
        m = made["files"].get(name, {})
        print(f"\n== {name}: {Path(m.get('path', name)).name}")
        print(f"   keys in file {c['file_keys']}, mapped by ComfyUI {c['file_keys_mapped']}, "
              f"not loaded {len(c['not_loaded'])}; patched weights {c['patched_weights']} "
              f"(unet {c['by_model']['unet']}, clip {c['by_model']['clip']}), patches without a weight "
              f"{len(c['patches_without_weight'])}")
        for k in c["not_loaded"]:
            print(f"     not loaded: {k}")
        if "max_abs_delta_diff" in c:
            print(f"   diffusers loaded {m.get('diffusers_modules')} modules (of {m.get('expected_modules')}); "
                  f"diffusers vs the LoRA given to dbooth: max |diff| {m.get('max_abs_diffusers_vs_truth')}")
            print(f"   ComfyUI vs diffusers over {c['compared_weights']} weights: max |delta_comfy - delta_diffusers| "
                  f"{c['max_abs_delta_diff']:.3g} (relative {c['max_rel_delta_diff']:.3g}, "
                  f"at {c['worst_weight'] or '-'})")
            for k in c["diffusers_weights_comfy_left_unpatched"]:
                print(f"     diffusers changes it, ComfyUI does not: {k}")
            for k in c["comfy_weights_diffusers_left_alone"]:
                print(f"     ComfyUI changes it, diffusers does not: {k}")
            for k in c["diffusers_modules_without_place"]:
                print(f"     no place in the original layout: {k}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=["all", "make", "comfy"], default="all")
    ap.add_argument("--work", help="folder for the LoRA files and diffusers' factors (default: a temporary one)")
    ap.add_argument("--comfyui", default="/tmp/comfyui", help="a ComfyUI source tree")
    ap.add_argument("--comfy-python", default="/tmp/comfyvenv/bin/python", help="python with ComfyUI's requirements")
    ap.add_argument("--stubs", default="/tmp/comfystubs",
                    help="folder put first on ComfyUI's sys.path (a stand-in torchvision; '' for none)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.phase == "comfy":
        print("@@" + json.dumps(comfy(Path(args.work), args.comfyui, args.stubs or None)))
        return
    with tempfile.TemporaryDirectory(prefix="comfy-lora-check-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        made = make(work)
        (work / "made.json").write_text(json.dumps(made, indent=1))
        if args.phase == "make":
            print(json.dumps(made, indent=1))
            return
        env = {**os.environ, "PYTHONPATH": ""}
        run = subprocess.run([args.comfy_python, os.path.abspath(__file__), "--phase", "comfy", "--work", str(work),
                              "--comfyui", args.comfyui, "--stubs", args.stubs], env=env, cwd=args.comfyui,
                             capture_output=True, text=True)
        line = next((ln for ln in run.stdout.splitlines() if ln.startswith("@@")), None)
        if run.returncode or line is None:
            sys.exit(f"ComfyUI phase failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}")
        checked = json.loads(line[2:])
        _print(made, checked)
        if args.json:
            Path(args.json).write_text(json.dumps({"made": made, "comfy": checked}, indent=1))


if __name__ == "__main__":
    main()
