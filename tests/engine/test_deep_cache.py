"""Deep cache: the UNet's deep blocks run every N-th step and are reused in between,
the shallow blocks every step; the picture stays close to the full one; shapes that
change (a guidance cut-off halves the batch) run in full; it is a request field the
CLI, the metadata and validation know."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from engine_helpers import TINY, TINY_SDXL, WAIT, request

from engine import cli, metadata, validation
from engine.api import EngineError, Finished
from engine.backends.choice import DEEP_CACHE_ON_TORCH, Accelerator


@contextmanager
def block_calls(tiny_models, source: str) -> Iterator[dict[str, list[int]]]:
    """The batch of every call of the UNet's shallowest and deepest blocks."""
    unet = tiny_models.get(source, lambda *_: None, lambda: False).pipe.unet
    seen: dict[str, list[int]] = {"unet": [], "shallow": [], "deep": []}
    watched = {"unet": unet, "shallow": unet.down_blocks[0], "deep": unet.mid_block}
    handles = []
    for name, module in watched.items():

        def record(module, args, kwargs, name=name) -> None:
            first = args[0] if args else next(iter(kwargs.values()))
            # A replayed block's forward is an instance attribute: it did not compute.
            if name == "unet" or "forward" not in vars(module):
                seen[name].append(first.shape[0])

        handles.append(module.register_forward_pre_hook(record, with_kwargs=True))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()
    # Nothing of the cache outlives the job: no replayed forward, no hook on the UNet.
    assert not any("forward" in vars(m) for m in unet.modules())
    assert not unet._forward_pre_hooks and not unet._forward_hooks


def pixels(result) -> np.ndarray:
    assert isinstance(result, Finished), result
    return np.asarray(result.images[0]).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_every_third_step_runs_the_deep_blocks_and_every_step_the_shallow_ones(engine, tiny_models):
    with block_calls(tiny_models, TINY) as calls:
        result = engine.generate(request(steps=9, deep_cache=3), WAIT)
    assert isinstance(result, Finished), result
    assert len(calls["unet"]) == 9 and len(calls["shallow"]) == 9
    assert len(calls["deep"]) == 3  # steps 0, 3 and 6
    assert result.request.deep_cache == 3 and len(result.step_previews) == 9


def test_a_deep_cache_picture_stays_close_to_the_full_one(engine):
    full = pixels(engine.generate(request(steps=12), WAIT))
    same = pixels(engine.generate(request(steps=12, deep_cache=1), WAIT))
    cached = pixels(engine.generate(request(steps=12, deep_cache=2), WAIT))
    assert np.array_equal(full, same)  # 1 is off
    assert not np.array_equal(full, cached)  # it did reuse features
    assert psnr(cached, full) > 30  # measured: 55 dB


def test_the_halved_batch_after_a_guidance_cut_off_runs_a_full_step(engine, tiny_models):
    with block_calls(tiny_models, TINY) as calls:
        result = engine.generate(request(steps=8, deep_cache=4, guidance_cutoff=0.5), WAIT)
    assert isinstance(result, Finished), result
    assert calls["unet"] == [2] * 5 + [1] * 3  # steps 0..4 guided
    # Full at step 0 and 4 (the interval), and at step 5: the first with batch 1.
    assert calls["deep"] == [2, 2, 1]


def test_an_sdxl_unet_reuses_its_deep_features_too(engine, tiny_models):
    with block_calls(tiny_models, TINY_SDXL) as calls:
        result = engine.generate(request(model=TINY_SDXL, steps=4, deep_cache=2), WAIT)
    assert isinstance(result, Finished), result
    assert len(calls["shallow"]) == 4 and len(calls["deep"]) == 2


def test_deep_cache_runs_plain_torch_and_says_so_where_another_backend_was_asked(tiny_models):
    model = tiny_models.get(TINY, lambda *_: None, lambda: False)
    accelerator = Accelerator("torch", compile_unet=True)
    session = accelerator.prepare(model, request(deep_cache=2), 1, lambda *_: None, lambda: False)
    assert session.label == "" and session.warnings == [DEEP_CACHE_ON_TORCH]
    assert accelerator._compiled == {}  # nothing was compiled for it


@pytest.mark.parametrize("value", [0, 11, 2.5, "3", None])
def test_a_deep_cache_out_of_range_is_one_clear_sentence(value):
    problems = validation.problems(request(deep_cache=value))
    assert problems == [
        f"deep cache must be a whole number of steps from 1 (off) to "
        f"{validation.MAX_DEEP_CACHE}, got {validation.short(value)}"
    ]
    with pytest.raises(EngineError):
        validation.check_request(request(deep_cache=value))


def test_the_deep_cache_is_written_into_the_picture_and_read_back():
    text = metadata.format_a1111(request(deep_cache=3), seed=1)
    assert "Deep cache: 3" in text
    assert metadata.parse_a1111(text).deep_cache == 3
    assert "Deep cache" not in metadata.format_a1111(request(), seed=1)


def test_the_cli_passes_deep_cache_and_saves_it(tmp_path, capsys, tiny_models):
    out = tmp_path / "out.png"
    code = cli.main(
        ["generate", "--prompt", "a red circle", "--model", "tiny", "--steps", "4",
         "--width", "32", "--height", "32", "--deep-cache", "2", "--output", str(out)],
        models=tiny_models,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    back = metadata.read_parameters(out)
    assert back is not None and back.deep_cache == 2
    code = cli.main(
        ["generate", "--prompt", "x", "--model", "tiny", "--deep-cache", "11",
         "--output", str(tmp_path / "bad.png")],
        models=tiny_models,
    )  # fmt: skip
    assert code == 1 and "deep cache must be a whole number" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()
