"""Training the oracle from the tools: a short run writes weights the product's ``Oracle`` loads."""

import pytest
import numpy as np
from safetensors import safe_open

from dbooth_shapes.examples import EXAMPLES
from dbooth_shapes.oracle import SUBJECT_LABELS, Oracle
from dbooth_shapes.world import render
from tools.shapes.train_oracle import labelled_scene, subject_of, train_oracle


@pytest.mark.slow
def test_a_short_run_writes_weights_the_oracle_loads(tmp_path):
    lines = []
    out = train_oracle(tmp_path / "oracle.safetensors", steps=100, pool_size=64, batch_size=8, log=lines.append)
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["steps"] == "100" and f.metadata()["pool_size"] == "64"
    assert any(line.startswith("oracle step 100/100 loss ") for line in lines)
    (prediction,) = Oracle.load(out).predict([render(labelled_scene(np.random.default_rng(0)))])
    assert prediction["subject"] in SUBJECT_LABELS
    assert not list(tmp_path.glob("*.tmp"))


def test_every_example_subject_is_labelled_as_itself():
    rng = np.random.default_rng(1)
    for name, example in EXAMPLES.items():
        assert subject_of(example.scene(rng)) == name and name in SUBJECT_LABELS
