"""Masked loss: the instance loss is a mean over each photo's subject area; class rows are unaffected."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dbooth.training.losses import dreambooth_loss, row_errors
from dbooth.training.data import latent_mask


def _pred_target(rows=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(rows, 4, 6, 6, generator=g), torch.randn(rows, 4, 6, 6, generator=g)


def test_masked_loss_equals_a_direct_computation():
    pred, target = _pred_target()
    g = torch.Generator().manual_seed(2)
    mask = torch.rand(4, 1, 6, 6, generator=g)
    mask[2:] = 1.0  # class rows
    loss = dreambooth_loss(pred, target, 2, 0.5, mask=mask)

    def masked_mean(r):
        total, area = 0.0, 0.0
        for c in range(4):
            for y in range(6):
                for x in range(6):
                    w = float(mask[r, 0, y, x])
                    total += w * float(pred[r, c, y, x] - target[r, c, y, x]) ** 2
                    area += w
        return total / area

    instance = (masked_mean(0) + masked_mean(1)) / 2
    prior = F.mse_loss(pred[2:], target[2:]).item()  # class rows: the plain mean
    assert abs(loss.instance.item() - instance) < 1e-5
    assert abs(loss.prior.item() - prior) < 1e-5
    assert abs(loss.total.item() - (instance + 0.5 * prior)) < 1e-5


def test_an_all_white_mask_is_the_plain_loss():
    pred, target = _pred_target()
    plain = dreambooth_loss(pred, target, 2, 1.0)
    white = dreambooth_loss(pred, target, 2, 1.0, mask=torch.ones(4, 1, 6, 6))
    torch.testing.assert_close(white.total, plain.total)
    torch.testing.assert_close(white.instance, plain.instance)


def test_a_binary_mask_scores_only_the_subject():
    pred, target = _pred_target(1)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 1:4, 2:5] = 1
    expected = (pred[..., 1:4, 2:5] - target[..., 1:4, 2:5]).pow(2).mean()
    torch.testing.assert_close(row_errors(pred, target, mask)[0], expected)
    # the background can be anything
    noisy = pred.clone()
    noisy[..., 0, :] += 100
    torch.testing.assert_close(row_errors(noisy, target, mask), row_errors(pred, target, mask))


def test_masks_work_with_min_snr_weights():
    pred, target = _pred_target()
    mask, weights = torch.ones(4, 1, 6, 6), torch.tensor([0.5, 1.0, 2.0, 0.25])
    mask[0, :, :3] = 0
    loss = dreambooth_loss(pred, target, 2, 1.0, weights, mask)
    rows = row_errors(pred, target, mask) * weights
    torch.testing.assert_close(loss.total, rows[:2].mean() + rows[2:].mean())


def test_latent_mask_is_the_area_average_of_each_cell():
    pixels = torch.zeros(1, 1, 16, 16)
    pixels[..., :8, :4] = 1.0  # the left half of the top-left 8x8 cell
    small = latent_mask(pixels, (2, 2))
    torch.testing.assert_close(small, torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]]))


def test_rows_scored_apart_equal_rows_scored_together():
    """Photos in a non-square bucket go through the UNet apart from square class images: same loss."""
    from dbooth.training.losses import loss_from_rows

    pred, target = _pred_target()
    mask = torch.ones(4, 1, 6, 6)
    mask[1, :, 2:] = 0.25
    together = dreambooth_loss(pred, target, 2, 0.7, mask=mask)
    apart = loss_from_rows(row_errors(pred[:2], target[:2], mask[:2]), row_errors(pred[2:], target[2:]), 0.7)
    torch.testing.assert_close(apart.total, together.total)
    torch.testing.assert_close(apart.prior, together.prior)
