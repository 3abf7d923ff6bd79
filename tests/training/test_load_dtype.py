"""A LoRA run under mixed precision loads its frozen base in that precision (the VAE in float32), so host RAM
peaks near the half-precision size; full fine-tuning loads float32."""

from __future__ import annotations

import torch

from dbooth.families.loading import load_pipeline
from dbooth.families.tiny_flow import save_tiny_flow_pipeline
from dbooth.training.setup import load_dtype, prepare_models
from dbooth.workspace.schema import TrainConfig


def test_the_load_precision_follows_method_and_mixed_precision():
    assert load_dtype(TrainConfig(method="lora", mixed_precision="bf16")) == {"default": torch.bfloat16,
                                                                              "vae": torch.float32}
    assert load_dtype(TrainConfig(method="lora", mixed_precision="fp16"))["default"] == torch.float16
    assert load_dtype(TrainConfig(method="lora", mixed_precision="no")) == torch.float32
    assert load_dtype(TrainConfig(method="full", mixed_precision="bf16")) == torch.float32


def test_a_bf16_lora_setup_keeps_frozen_weights_in_bf16_and_trains_float32_adapters(tmp_path):
    cfg = TrainConfig(method="lora", mixed_precision="bf16", train_text_encoder=True)
    pipe = load_pipeline(str(save_tiny_flow_pipeline(tmp_path / "flux", "flux")), dtype=load_dtype(cfg))
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.bfloat16)
    frozen = {p.dtype for p in models.denoiser.parameters() if not p.requires_grad}
    trained = {p.dtype for m in models.trained for p in m.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    assert {p.dtype for p in models.text_encoders["text_encoder_2"].parameters()} == {torch.bfloat16}  # T5, frozen


def test_without_samples_during_the_run_the_text_encoders_leave_memory(tmp_path, photos, monkeypatch):
    import gc
    import weakref

    import dbooth.training.loop as loop
    from dbooth import api
    from dbooth.workspace.config import apply_overrides, write_manifest

    base = save_tiny_flow_pipeline(tmp_path / "flux", "flux")
    ws = api.init(tmp_path / "ws", "dog", base_model=str(base), images=photos)
    settings = {"prior.enabled": False, "train.max_steps": 2, "train.checkpoint_every": 0, "train.method": "lora",
                "train.flow.max_sequence_length": 16}
    alive_after_setup = []
    real = loop.build_session

    def spy(inputs, run, pipe, *args, **kwargs):
        t5 = weakref.ref(pipe.text_encoder_2)
        built = real(inputs, run, pipe, *args, **kwargs)
        gc.collect()
        alive_after_setup.append(t5() is not None)
        return built

    monkeypatch.setattr(loop, "build_session", spy)
    for validation_every, kept in ((0, False), (2, True)):  # validation samples: the encoders must stay
        write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {**settings,
                                                                         "train.validation_every": validation_every}))
        assert api.train(ws).run.info()["status"] == "complete"
        assert alive_after_setup.pop() is kept
