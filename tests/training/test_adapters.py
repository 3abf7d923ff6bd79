"""LoRA variants (rsLoRA, DoRA, inits, a text encoder's own rank) against direct computations, and their files."""

from __future__ import annotations

import math

import pytest
import torch

from dbooth.util.errors import DboothError
from dbooth.workspace.schema import LoraConfig as LoraSettings
from dbooth.workspace.schema import TrainConfig
from dbooth.training.adapters import add_lora, lora_config


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.to_q = torch.nn.Linear(6, 5)


def _adapted(**settings) -> tuple[Block, torch.Tensor, torch.Tensor]:
    """A Linear with a LoRA whose B is random (it starts at zero), and its base weight and bias."""
    block = Block()
    w, b = block.to_q.weight.detach().clone(), block.to_q.bias.detach().clone()
    add_lora(block, lora_config(LoraSettings(**settings), ["to_q"]))
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return block, w, b


def _ab(block):
    layer = block.to_q
    return layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()


@pytest.mark.parametrize("rslora,expected", [(False, 8.0 / 4), (True, 8.0 / math.sqrt(4))])
def test_lora_output_is_the_base_plus_the_scaled_low_rank_update(rslora, expected):
    block, w, b = _adapted(rank=4, alpha=8.0, use_rslora=rslora)
    assert block.to_q.scaling["default"] == pytest.approx(expected)
    a, up = _ab(block)
    x = torch.randn(3, 6)
    direct = x @ (w + expected * up @ a).T + b
    torch.testing.assert_close(block.to_q(x), direct, rtol=1e-5, atol=1e-5)


def test_dora_output_is_the_magnitude_times_the_normalised_direction():
    block, w, b = _adapted(rank=2, alpha=2.0, use_dora=True)
    layer = block.to_q
    with torch.no_grad():
        layer.lora_magnitude_vector["default"].weight.mul_(torch.linspace(0.5, 1.5, 5))
    magnitude = layer.lora_magnitude_vector["default"].weight.detach()
    a, up = _ab(block)
    directed = w + 1.0 * up @ a
    x = torch.randn(3, 6)
    direct = x @ (magnitude[:, None] * directed / directed.norm(dim=1, keepdim=True)).T + b
    torch.testing.assert_close(layer(x), direct, rtol=1e-5, atol=1e-5)


def test_text_encoder_gets_its_own_rank_and_alpha_and_inits_map_to_peft():
    settings = LoraSettings(rank=8, alpha=8.0, text_encoder_rank=2, text_encoder_alpha=1.0, init="kaiming")
    unet = lora_config(settings, ["to_q"])
    te = lora_config(settings, ["q_proj"], text_encoder=True)
    assert (unet.r, unet.lora_alpha, te.r, te.lora_alpha) == (8, 8.0, 2, 1.0)
    assert unet.init_lora_weights is True and lora_config(LoraSettings(), ["to_q"]).init_lora_weights == "gaussian"
    same = lora_config(LoraSettings(rank=4, alpha=2.0), ["q_proj"], text_encoder=True)
    assert (same.r, same.lora_alpha) == (4, 2.0)


def _dora_pipeline():
    from dbooth.families.tiny import tiny_pipeline
    from dbooth.training.setup import prepare_models

    pipe = tiny_pipeline()
    lora = LoraSettings(rank=4, alpha=4.0, use_dora=True, use_rslora=True, text_encoder_rank=2)
    cfg = TrainConfig(method="lora", lora=lora, train_text_encoder=True)
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        for model in models.trained:
            for name, p in model.named_parameters():
                if "lora_B" in name or "magnitude" in name:
                    p.add_(0.1 * torch.randn_like(p))
    return pipe, models


def _outputs(unet, text_encoder):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (1, 16), generator=g)
    x, hidden = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 16, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10]), hidden).sample, text_encoder(ids)[0]


def test_dora_file_loads_in_diffusers_merges_and_refuses_kohya(tmp_path):
    from dbooth.export.kohya import lora_to_kohya
    from dbooth.export.lora_file import read_lora_file, save_lora_file
    from dbooth.export.merge import merge_lora_into_pipeline
    from dbooth.families.tiny import tiny_pipeline

    pipe, models = _dora_pipeline()
    models.family.save_lora(tmp_path, models.denoiser, models.trained_encoders)
    trained = _outputs(models.denoiser, models.text_encoders["text_encoder"])
    file = tmp_path / "pytorch_lora_weights.safetensors"

    base = _outputs(*(lambda p: (p.unet, p.text_encoder))(tiny_pipeline()))
    assert not torch.allclose(base[0], trained[0]) and not torch.allclose(base[1], trained[1])

    # the exported diffusers-format file (rewritten by `export --format lora`) loads with load_lora_weights
    lora = read_lora_file(file)
    assert lora.is_dora and lora.components["text_encoder"].rank(next(iter(lora.components["text_encoder"].modules))) == 2
    exported = save_lora_file(lora, tmp_path / "export.safetensors")
    loaded = tiny_pipeline()
    loaded.load_lora_weights(str(exported))
    for got, want in zip(_outputs(loaded.unet, loaded.text_encoder), trained):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

    merged = merge_lora_into_pipeline(tiny_pipeline(), file)
    for got, want in zip(_outputs(merged.unet, merged.text_encoder), trained):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    with pytest.raises(DboothError, match="DoRA.*kohya") as info:
        lora_to_kohya(lora)
    assert "\n" not in str(info.value)
