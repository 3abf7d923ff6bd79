import math

import pytest
import torch

from dbooth.eval import metrics


def test_identical_embeddings_score_one_and_zero_diversity():
    e = torch.randn(3, 16)
    assert metrics.dino_score(e, e[:1].repeat(2, 1)) != pytest.approx(1.0)  # different images: not 1
    same = e[:1].repeat(4, 1)
    assert metrics.dino_score(same, e[:1]) == pytest.approx(1.0)
    assert metrics.clip_i_score(same, same) == pytest.approx(1.0)
    assert metrics.div_score({"p": same}, metrics.cosine_distance) == pytest.approx(0.0, abs=1e-6)


def test_mean_cosine_matches_a_direct_computation():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    s = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # pairs: (1,0)-(1,0)=1, (1,0)-(1,1)=1/sqrt2, (0,1)-(1,0)=0, (0,1)-(1,1)=1/sqrt2
    expected = (1 + 2 / math.sqrt(2)) / 4
    assert metrics.dino_score(g, s) == pytest.approx(expected)
    assert metrics.pres_score(g, s) == pytest.approx(expected)
    assert metrics.cosine_matrix(g, s).shape == (2, 2)


def test_clip_t_pairs_each_image_with_its_own_prompt():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert metrics.clip_t_score(images, texts) == pytest.approx(0.5)  # 1 and 0, not the all-pairs mean
    with pytest.raises(ValueError):
        metrics.clip_t_score(images, texts[:1])


def test_div_averages_pairwise_distances_per_prompt():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # distances 1, 2, 1 -> mean 4/3
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # distance 0
    assert metrics.div_score({"a": a}, metrics.cosine_distance) == pytest.approx(4 / 3)
    assert metrics.div_score({"a": a, "b": b}, metrics.cosine_distance) == pytest.approx((4 / 3 + 0) / 2)
    assert math.isnan(metrics.div_score({"one": a[:1]}, metrics.cosine_distance))


def test_empty_inputs_are_nan_not_an_error():
    assert math.isnan(metrics.dino_score(torch.zeros(0, 4), torch.randn(2, 4)))
