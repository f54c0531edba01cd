"""Same request, same image; a batch uses seed, seed + 1, ..."""

from __future__ import annotations

import numpy as np
from engine_helpers import WAIT, request

from engine.api import Finished


def pixels(result) -> list[np.ndarray]:
    assert isinstance(result, Finished), result
    return [np.asarray(image).astype(int) for image in result.images]


def test_same_request_same_image(engine):
    a = pixels(engine.generate(request(seed=7, scheduler="Euler a"), WAIT))
    b = pixels(engine.generate(request(seed=7, scheduler="Euler a"), WAIT))
    c = pixels(engine.generate(request(seed=8, scheduler="Euler a"), WAIT))
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a[0] - c[0]).mean() > 1


def test_batch_uses_consecutive_seeds(engine):
    batch = engine.generate(request(seed=10, batch_size=2, scheduler="Euler a"), WAIT)
    assert batch.seeds == (10, 11)
    both = pixels(batch)
    for seed, image in zip((10, 11), both, strict=True):
        alone = pixels(engine.generate(request(seed=seed, scheduler="Euler a"), WAIT))[0]
        assert np.abs(alone - image).max() <= 2  # batched arithmetic may round differently


def test_random_seed_is_reported_and_reproduces(engine):
    first = engine.generate(request(seed=None), WAIT)
    seed = first.seeds[0]
    assert first.request.seed == seed
    again = engine.generate(request(seed=seed), WAIT)
    np.testing.assert_array_equal(pixels(first)[0], pixels(again)[0])
