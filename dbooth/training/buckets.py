"""Aspect-ratio buckets: training shapes of about the model's pixel count, so a wide or tall photo keeps
its framing instead of being cropped to a square (kohya's and SimpleTuner's behaviour).

Pure functions on sizes; ``LatentBank`` cuts each photo to its bucket and ``draw_batch`` keeps a
batch within one bucket, since a batch is one tensor.
"""

from __future__ import annotations

import math

MAX_RATIO = 2.0  # the longest side at most twice the shorter: past that SD has seen few images


def bucket_step(resolution: int) -> int:
    """Sides are multiples of 64 px (what SD's UNet downsamples to cleanly); resolution / 8 when that is
    smaller (tiny test models), never below 8 (one latent cell)."""
    return max(8, min(64, resolution // 8 // 8 * 8))


def bucket_sizes(resolution: int, max_ratio: float = MAX_RATIO) -> list[tuple[int, int]]:
    """(width, height) buckets with at most ``resolution``² pixels, square first, then landscape and
    portrait pairs growing wider: for 512, 512x512, 576x448, 448x576, 640x384, 384x640.

    Each width takes the tallest height (a multiple of the step) that stays within the pixel count."""
    step = bucket_step(resolution)
    area = resolution * resolution
    sizes = [(resolution, resolution)]
    width = resolution + step
    while True:
        height = area // width // step * step
        if height < step or width / height > max_ratio:
            return sizes
        sizes += [(width, height), (height, width)]
        width += step


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the photo's (in log ratio, so 2:1 and 1:2 are equally
    far from square); ties go to the earlier, squarer bucket."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - ratio))


def bucket_counts(targets: list[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    """How many photos each bucket got, widest first, for the run's log."""
    counts: dict[tuple[int, int], int] = {}
    for target in targets:
        counts[target] = counts.get(target, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[0][0] / item[0][1])


def share_out(total: int, counts: list[tuple[tuple[int, int], int]]) -> list[tuple[tuple[int, int], int]]:
    """Split ``total`` images over buckets holding ``counts`` photos each: one per bucket, the rest in
    proportion to the photos (largest remainder, ties to the earlier bucket), in ``counts``' order. The
    result sums to ``max(total, len(counts))``: every bucket a photo uses gets at least one."""
    used = [(bucket, n) for bucket, n in counts if n > 0]
    if not used:
        return []
    rest = max(0, total - len(used))
    photos = sum(n for _, n in used)
    quotas = [rest * n / photos for _, n in used]
    shares = [int(q) for q in quotas]
    by_remainder = sorted(range(len(used)), key=lambda k: (-(quotas[k] - shares[k]), k))
    for k in by_remainder[: rest - sum(shares)]:
        shares[k] += 1
    return [(bucket, 1 + share) for (bucket, _), share in zip(used, shares)]
