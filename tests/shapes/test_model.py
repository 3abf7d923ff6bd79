"""The committed builtin:shapes pipeline, its tokenizer and the path lookup."""

import numpy as np
import pytest
import torch

from dbooth_shapes import BUILTIN_MODELS, builtin_model_path
from dbooth_shapes.architecture import IDENTIFIER_TOKENS, build_tokenizer
from dbooth_shapes.world import pretraining_caption, random_scene, world_words
from dbooth.util.errors import DboothError

pytestmark = pytest.mark.quality


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(builtin_model_path("builtin:shapes"))
    p.set_progress_bar_config(disable=True)
    return p


def test_builtin_model_path_and_unknown_name():
    assert builtin_model_path("builtin:shapes") == BUILTIN_MODELS["builtin:shapes"]
    with pytest.raises(DboothError, match="available: builtin:shapes") as e:
        builtin_model_path("builtin:nope")
    assert "\n" not in str(e.value)


def test_committed_folder_is_small_safetensors_only():
    root = builtin_model_path("builtin:shapes")
    files = [p for p in root.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 40 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt")]
    assert (root / "README.md").is_file()


def test_pipeline_loads_and_samples_one_image(pipe):
    assert pipe.safety_checker is None
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.steps_offset == 1
    assert 0.05 < pipe.vae.config.scaling_factor < 20
    out = pipe("a photo of a red star on the beach", num_inference_steps=2, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(0), output_type="np")
    img = out.images[0]
    assert img.shape == (64, 64, 3) and np.isfinite(img).all() and img.std() > 0.01


def test_saved_tokenizer_keeps_words_and_identifiers_as_single_tokens(pipe):
    tok = pipe.tokenizer
    for word in world_words() + list(IDENTIFIER_TOKENS):
        assert len(tok.tokenize(word)) == 1, word
    assert tok.tokenize("sks")[0] == build_tokenizer().tokenize("sks")[0]
    assert "sks" in IDENTIFIER_TOKENS


def test_identifiers_never_occur_in_pretraining_captions():
    tok = build_tokenizer()
    ident_ids = {tok.convert_tokens_to_ids(tok.tokenize(w))[0] for w in IDENTIFIER_TOKENS}
    rng = np.random.default_rng(0)
    for _ in range(500):
        text = pretraining_caption(random_scene(rng), rng)
        assert not ident_ids & set(tok(text).input_ids), text


def test_vae_round_trip_keeps_what_the_oracle_judges():
    """The committed VAE is the ceiling for every generated image: its round trips must still
    show the shape, the scene and the example subjects."""
    from tools.shapes.score_model import evaluate_vae

    r = evaluate_vae(num_samples=40)
    assert r["world"]["context_accuracy"] >= 0.95 and r["world"]["shape_accuracy"] >= 0.85
    assert r["subjects"]["shape_accuracy"] >= 0.9 and r["subjects"]["subject_accuracy"] >= 0.8


def test_bare_prompt_evaluation_asks_for_the_class_only_and_scores_shape_per_class():
    from tools.shapes.score_model import evaluate_base_model

    r = evaluate_base_model(num_samples=6, steps=2, bare=True, batch_size=6)
    assert all(p.startswith("a photo of a") and len(p.split()) == 5 for p in r["prompts"])  # "a photo of a star"
    assert "context_accuracy" not in r and 0.0 <= r["shape_accuracy"] <= 1.0
    assert set(r["shape_accuracy_by_shape"]) == {p.split()[-1] for p in r["prompts"]}
