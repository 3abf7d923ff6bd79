import numpy as np
import pytest
import torch

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.training.restore import checkpoint_pipeline
from dbooth.generate.sample import load_for_sampling


def _image(pipe):
    return np.asarray(pipe("a photo of sks dog", num_inference_steps=2, height=32, width=32,
                           generator=torch.Generator("cpu").manual_seed(0)).images[0], dtype=np.int16)


@pytest.mark.parametrize("method,ema", [("full", False), ("lora", False), ("full", True)])
def test_a_checkpoint_rebuilds_the_run_as_it_was_at_that_step(make_workspace, method, ema):
    """Step 2 of a 4-step run is the final model of a 2-step run with the same seed (EMA averages included)."""
    lr = 1e-3 if method == "full" else 5e-2  # large enough that two steps visibly change the samples
    common = {"train.method": method, "prior.enabled": False, "train.learning_rate": lr,
              "train.train_text_encoder": method == "lora", "train.ema.enabled": ema, "train.ema.decay": 0.5}
    short = make_workspace("short", **common, **{"train.max_steps": 2})
    long = make_workspace("long", **common, **{"train.max_steps": 4, "train.checkpoint_every": 2})
    api.train(short)
    run = api.train(long).run
    (step2,) = run.checkpoints()
    restored = checkpoint_pipeline(run, step2)
    expected = load_for_sampling(short.manifest().base_model, api.find_run(short))
    base = load_for_sampling(short.manifest().base_model, None)
    got, want = _image(restored), _image(expected)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - _image(base)).max() > 1  # the checkpoint did change the model


def test_a_checkpoint_from_another_kind_of_run_is_refused(make_workspace):
    ws = make_workspace("mixed", **{"prior.enabled": False, "train.method": "lora", "train.max_steps": 2,
                                    "train.checkpoint_every": 1})
    run = api.train(ws).run
    (step1,) = run.checkpoints()
    config = run.config_path.read_text()
    run.config_path.write_text(config.replace("method: lora", "method: full"))
    with pytest.raises(DboothError, match="cannot be applied"):
        checkpoint_pipeline(run, step1)
