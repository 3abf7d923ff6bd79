import pytest
import torch
from PIL import Image

from dbooth.util.errors import DboothError
from dbooth.eval import metrics
from dbooth.eval.encoders import IMAGENET_MEAN, IMAGENET_STD, load_clip, load_dino, to_pixels
from tiny_encoders import save_tiny_clip, save_tiny_dino


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return load_dino(str(save_tiny_dino(root / "dino"))), load_clip(str(save_tiny_clip(root / "clip")))


def _images():
    return [Image.new("RGB", (40, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (20, 200, 30)),
            Image.effect_noise((48, 48), 60).convert("RGB")]


def test_to_pixels_crops_the_centre_and_normalises():
    im = Image.new("RGB", (64, 32), (0, 0, 0))
    im.paste((255, 255, 255), (16, 0, 48, 32))  # a white centre square between black sides
    x = to_pixels([im], 16, IMAGENET_MEAN, IMAGENET_STD)
    assert x.shape == (1, 3, 16, 16)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[0, :, 8, 8], white, atol=1e-4)


def test_dino_embeds_cls_tokens_and_identical_images_score_one(encoders):
    dino, _ = encoders
    ims = _images()
    e = dino.embed(ims)
    assert e.shape == (3, 32)
    direct = dino.model(pixel_values=to_pixels(ims, 32, IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state[:, 0]
    assert torch.allclose(e, direct, atol=1e-5)
    same = dino.embed([ims[2]] * 3)
    assert metrics.dino_score(same, dino.embed([ims[2]])) == pytest.approx(1.0, abs=1e-5)
    assert metrics.div_score({"p": same}, metrics.cosine_distance) == pytest.approx(0.0, abs=1e-5)
    assert metrics.dino_score(e[:1], e[1:2]) < 0.999


def test_clip_scores_match_a_direct_computation(encoders):
    _, clip = encoders
    ims = _images()[:2]
    prompts = ["a photo of a dog", "a star on the beach"]
    img, txt = clip.embed_images(ims), clip.embed_texts(prompts)
    assert img.shape == txt.shape == (2, 16)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert metrics.clip_t_score(img, txt) == pytest.approx(float(cos.mean()), abs=1e-6)
    assert metrics.clip_i_score(img[:1], img[:1]) == pytest.approx(1.0, abs=1e-5)


def test_a_missing_encoder_offline_is_one_line_naming_the_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DboothError) as e:
        load_dino("facebook/dino-vits16-not-cached")
    msg = str(e.value)
    assert "huggingface-cli download facebook/dino-vits16-not-cached" in msg and "eval.dino" in msg
    assert "\n" not in msg
    (tmp_path / "broken").mkdir()
    with pytest.raises(DboothError, match="cannot be loaded"):
        load_clip(str(tmp_path / "broken"))
