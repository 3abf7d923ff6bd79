"""The bench runs a flow-matching base (SD 3.5, FLUX.1 shapes) through the real trainer: the worker reads the
transformer where a UNet was, and the report's FLOPs and memory estimate are the flow transformer's."""

from __future__ import annotations

import pytest

from dbooth.bench import measure, worker
from dbooth.bench.flops import static_memory, step_flops
from dbooth.workspace.config import apply_overrides, manifest_to_dict


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_a_flow_base_trains_under_the_bench(tmp_path, kind):
    from dbooth.families.tiny_flow import save_tiny_flow_pipeline

    base = save_tiny_flow_pipeline(tmp_path / "base", kind)
    # fp32: accelerate keeps one mixed-precision setting per process, and other in-process tests train in fp32
    overrides = {"train.resolution": 32, "train.method": "lora", "prior.enabled": True,
                 "train.gradient_checkpointing": True}
    ws = measure.make_workspace(tmp_path / "ws", str(base), overrides, num_instance=2, num_class=2)
    res = worker.run_training_spec({"workspace": str(ws.root), "overrides": {}, "warmup": 1, "steps": 1,
                                    "patches": {}})
    assert res["steps_per_s"] > 0 and res["observed"]["gradient_checkpointing"]
    assert not res["observed"]["channels_last"]  # a transformer has no convolution to lay out
    manifest = manifest_to_dict(apply_overrides(ws.manifest(), {}))
    train = manifest["train"]
    est = static_memory(str(base), train, "cuda", prior=True)
    assert est["family"] == kind and est["activations_mb"] == est["activations_checkpointed_mb"] > 0
    assert est["image_tokens"] == (32 // 2 // 2) ** 2  # the tiny VAE halves the side once, then 2x2 patches
    flops = step_flops(str(base), train, prior=True)
    assert flops["transformer"] > 0 and flops["total"] == flops["transformer"]
