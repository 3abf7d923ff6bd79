"""``train.compile``: a compiled UNet must train the run the eager UNet trains, or the run refuses to start.

Two layers: the first-batch gradient check (dbooth.training.compile_check) on a correct compile and a
deliberately wrong one, and whole runs. Inductor fuses and reorders floating-point work, so a correct
compiled run is not bitwise equal to the eager one; the stated tolerance for a 6-step fp32 run on the CPU is
LOSS_RTOL on every step's loss. On torch 2.13.0's CPU backend inductor computes wrong UNet gradients (the
module docstring of compile_check), so there the run must refuse before its first step with one line.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.training.compile_check import TOLERANCE, check_compiled_gradients, eager, gradient_error
from dbooth.training.history import HISTORY_FILE, read_history

LOSS_RTOL = 1e-3
STEPS = 6


def _unet(tiny_base):
    return UNet2DConditionModel.from_pretrained(tiny_base / "unet")


def _loss(unet):
    def loss():  # draws from torch's RNG, as a training step does
        x = torch.randn(2, 4, 16, 16)
        out = unet(x, torch.randint(0, 1000, (2,)), torch.randn(2, 77, 32)).sample
        return (out * torch.randn_like(out)).sum()
    return loss


@pytest.mark.slow
def test_a_correct_compile_passes_and_the_random_stream_is_left_as_it_was(tiny_base):
    unet = _unet(tiny_base)
    unet.compile(backend="aot_eager")  # traced and run through AOTAutograd, the same arithmetic
    params = list(unet.parameters())
    torch.manual_seed(3)
    assert check_compiled_gradients(unet, _loss(unet), params, torch.float32, torch.device("cpu")) < 1e-5
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))  # the check consumed no random numbers


def test_a_compile_that_changes_the_gradients_is_refused_in_one_line(tiny_base):
    unet = _unet(tiny_base)
    real = unet._call_impl

    def wrong(*args, **kwargs):  # what a miscompiled backward amounts to: other gradients, same forward
        out = real(*args, **kwargs)
        out.sample = out.sample + (out.sample.detach() * 0.5 - out.sample * 0.5)
        return out

    unet._compiled_call_impl = wrong
    params = list(unet.parameters())
    assert gradient_error(unet, _loss(unet), params) == pytest.approx(0.5, rel=1e-3)
    with eager(unet):
        assert unet._compiled_call_impl is None
    assert unet._compiled_call_impl is wrong
    with pytest.raises(DboothError) as caught:
        check_compiled_gradients(unet, _loss(unet), params, torch.float32, torch.device("cpu"))
    message = str(caught.value)
    assert "\n" not in message and "differ from the uncompiled UNet's by 0.5" in message
    assert "set train.compile: false" in message and f"at most {TOLERANCE[torch.float32]:g}" in message


def _run(make_workspace, name: str, compile: bool):
    ws = make_workspace(name, **{"train.method": "full", "train.max_steps": STEPS, "train.compile": compile,
                                 "train.lr_scheduler": "constant", "train.learning_rate": 1e-4})
    api.prior(ws)
    run = api.train(ws).run
    return [r["loss"] for r in read_history(run.dir / HISTORY_FILE)]


@pytest.mark.slow
def test_a_compiled_run_follows_the_eager_loss_curve_or_refuses_before_its_first_step(make_workspace):
    eager_loss = _run(make_workspace, "eager", compile=False)
    try:
        compiled_loss = _run(make_workspace, "compiled", compile=True)
    except DboothError as refused:  # torch 2.13.0's CPU inductor: wrong UNet gradients, caught at the start
        assert "train.compile: the compiled UNet's gradients differ" in str(refused)
        return
    assert len(compiled_loss) == len(eager_loss) == STEPS
    for step, (a, b) in enumerate(zip(eager_loss, compiled_loss), start=1):
        assert b == pytest.approx(a, rel=LOSS_RTOL), f"step {step}"
