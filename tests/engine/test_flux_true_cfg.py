"""FLUX.1 dev's true CFG (FluxPipeline's true_cfg_scale with a negative prompt) beside its
distilled guidance: the pixels of a plain diffusers call, left out with a warning where a
model has none, checked, written into the PNG text as Forge writes it and read back,
and offered by the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from engine_helpers import WAIT
from tiny_flow_models import save_flow_model

from engine import cli, metadata, validation
from engine.api import Finished, GenerationRequest, GuidanceKind, ModelInfo
from engine.models import ModelManager
from engine.worker import Engine

SIZE = 64


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("true-cfg")
    return {v: save_flow_model(root / f"flux-{v}", "flux1", v) for v in ("dev", "schnell")}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(ModelManager(device="cpu", dtype="float32", tiny_vae_dirs={}))
    yield eng
    eng.shutdown(10)


def ask(folder: Path, **changes: Any) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle",
        negative_prompt="a blue square",
        steps=3,
        guidance_scale=3.5,
        true_cfg_scale=2.0,
        seed=11,
        width=SIZE,
        height=SIZE,
        scheduler="Euler",
        model=str(folder),
    ).with_changes(**changes)


def plain(folder: Path, **extra: Any) -> np.ndarray:
    pipe = FluxPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        image = pipe(
            prompt="a red circle",
            num_inference_steps=3,
            guidance_scale=3.5,
            generator=[torch.Generator("cpu").manual_seed(11)],
            width=SIZE,
            height=SIZE,
            **extra,
        ).images[0]
    return np.asarray(image)


def test_flux_dev_with_true_cfg_gives_the_pixels_of_a_plain_call_with_true_cfg_scale(
    engine: Engine, folders: dict[str, Path]
) -> None:
    done = engine.generate(ask(folders["dev"]), WAIT)
    assert isinstance(done, Finished), done
    assert not done.warnings
    expected = plain(folders["dev"], true_cfg_scale=2.0, negative_prompt="a blue square")
    np.testing.assert_array_equal(np.asarray(done.images[0]), expected)
    assert len(done.step_previews) == 3  # previews every step, as without
    off = engine.generate(ask(folders["dev"], true_cfg_scale=1.0), WAIT)
    assert isinstance(off, Finished), off
    np.testing.assert_array_equal(np.asarray(off.images[0]), plain(folders["dev"]))
    assert not np.array_equal(np.asarray(off.images[0]), expected)


def test_an_empty_negative_prompt_still_runs_true_cfg_against_empty_text(
    engine: Engine, folders: dict[str, Path]
) -> None:
    done = engine.generate(ask(folders["dev"], negative_prompt=""), WAIT)
    assert isinstance(done, Finished), done
    expected = plain(folders["dev"], true_cfg_scale=2.0, negative_prompt="")
    np.testing.assert_array_equal(np.asarray(done.images[0]), expected)


def test_a_model_without_true_cfg_leaves_it_out_and_says_so(
    engine: Engine, folders: dict[str, Path]
) -> None:
    done = engine.generate(ask(folders["schnell"], guidance_scale=0.0), WAIT)
    assert isinstance(done, Finished), done
    assert any("take no true CFG scale" in w for w in done.warnings), done.warnings
    without = engine.generate(ask(folders["schnell"], guidance_scale=0.0, true_cfg_scale=1.0), WAIT)
    assert isinstance(without, Finished) and not without.warnings
    np.testing.assert_array_equal(np.asarray(done.images[0]), np.asarray(without.images[0]))


@pytest.mark.parametrize("value", [0.5, float("nan"), validation.MAX_GUIDANCE + 1, "2"])
def test_a_true_cfg_scale_outside_1_to_the_guidance_limit_is_refused_in_one_sentence(
    value: object,
) -> None:
    problems = validation.problems(GenerationRequest(prompt="x", true_cfg_scale=value))  # type: ignore[arg-type]
    assert [p for p in problems if p.startswith("true CFG scale must be a number from 1 (off)")]


DEV = ModelInfo("flux1", "dev", str(GuidanceKind.DISTILLED))


def test_the_png_text_writes_true_cfg_as_forges_cfg_scale_and_reads_it_back() -> None:
    request = GenerationRequest(prompt="p", negative_prompt="n", guidance_scale=3.5,
                                true_cfg_scale=2.5, seed=1)  # fmt: skip
    text = metadata.format_a1111(request, 1, DEV)
    assert "CFG scale: 2.5" in text and "Distilled CFG Scale: 3.5" in text
    back = metadata.parse_a1111(text)
    assert (back.guidance_scale, back.true_cfg_scale, back.negative_prompt) == (3.5, 2.5, "n")
    record = metadata.from_record(json.dumps(metadata.to_record(request, 1, DEV)))
    assert record is not None and record.true_cfg_scale == 2.5


def test_forges_flux_text_with_cfg_scale_1_reads_as_true_cfg_off() -> None:
    back = metadata.parse_a1111("p\nSteps: 20, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 2")
    assert (back.guidance_scale, back.true_cfg_scale) == (3.5, 1.0)
    sd = metadata.parse_a1111("p\nSteps: 20, CFG scale: 7, Seed: 2")  # not FLUX: plain CFG
    assert (sd.guidance_scale, sd.true_cfg_scale) == (7.0, 1.0)


def test_the_cli_takes_true_cfg_and_refuses_a_word(tmp_path: Path) -> None:
    def args(*extra: str) -> argparse.Namespace:
        argv = ["generate", "--prompt", "p", "--output", str(tmp_path / "o.png"), *extra]
        return cli._parser().parse_args(argv)

    assert cli.build_request(args("--true-cfg", "2.5")).true_cfg_scale == 2.5
    assert cli.build_request(args()).true_cfg_scale == 1.0
    with pytest.raises(cli._CliError, match="--true-cfg must be a number"):
        cli.build_request(args("--true-cfg", "lots"))
