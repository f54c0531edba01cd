"""How "auto" remembers its backend: per model AND per UNet shape (size and batch), kept
in the cache folder across engines; a conversion failure is kept per model and holds at
every size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import TINY, request

from engine.backends import choice

pytest.importorskip("openvino")


@pytest.fixture
def model(tiny_models):
    return tiny_models.get(TINY, lambda *_: None, lambda: False)


def test_a_choice_measured_at_one_size_does_not_decide_another(model, tmp_path: Path):
    accelerator = choice.Accelerator("auto", cache_dir=tmp_path)
    small, large = choice.choice_shape(2, 128, 128), choice.choice_shape(2, 512, 512)
    accelerator._remember(model, "torch", shape=small, torch_s=1.0, openvino_s=2.0)
    assert accelerator._remembered(model, small) == "torch"
    assert accelerator._remembered(model, large) is None  # not measured yet: measure it
    accelerator._remember(model, "openvino", shape=large, torch_s=4.0, openvino_s=2.5)
    assert accelerator._remembered(model, large) == "openvino"
    assert accelerator._remembered(model, small) == "torch"


def test_the_batch_is_part_of_the_shape(model, tmp_path: Path):
    accelerator = choice.Accelerator("auto", cache_dir=tmp_path)
    accelerator._remember(model, "openvino", shape=choice.choice_shape(2, 512, 512))
    assert accelerator._remembered(model, choice.choice_shape(1, 512, 512)) is None
    assert choice.choice_shape(1, 512, 768) == "768x512x1"


def test_choices_are_kept_on_disk_for_the_next_engine(model, tmp_path: Path):
    shape = choice.choice_shape(2, 512, 512)
    choice.Accelerator("auto", cache_dir=tmp_path)._remember(model, "openvino", shape=shape)
    later = choice.Accelerator("auto", cache_dir=tmp_path)
    assert later._remembered(model, shape) == "openvino"
    saved = json.loads((tmp_path / choice.CHOICES_FILE).read_text())
    assert [entry["shape"] for entry in saved.values()] == ["512x512x2"]


def test_a_conversion_failure_keeps_torch_at_every_size(model, tmp_path: Path):
    accelerator = choice.Accelerator("auto", cache_dir=tmp_path)
    shape = choice.choice_shape(2, 512, 512)
    accelerator._remember(model, "openvino", shape=shape)
    accelerator._remember(model, "torch", failed="RuntimeError: unsupported operation")
    assert accelerator._remembered(model, shape) == "torch"
    assert accelerator._remembered(model, choice.choice_shape(1, 64, 64)) == "torch"


def test_a_forced_backend_remembers_nothing(model, tmp_path: Path):
    forced = choice.Accelerator("torch", cache_dir=tmp_path)
    forced._remember(model, "torch", shape=choice.choice_shape(2, 64, 64))
    assert not (tmp_path / choice.CHOICES_FILE).exists()


def test_an_unreadable_choices_file_means_measure_again(model, tmp_path: Path):
    (tmp_path / choice.CHOICES_FILE).write_text("{not json")
    accelerator = choice.Accelerator("auto", cache_dir=tmp_path)
    assert accelerator._remembered(model, choice.choice_shape(2, 64, 64)) is None
    accelerator._remember(model, "torch", shape=choice.choice_shape(2, 64, 64))
    assert accelerator._remembered(model, choice.choice_shape(2, 64, 64)) == "torch"


def _never() -> bool:
    return False


def _quiet(*_args: object) -> None:
    pass


def test_a_size_the_converted_graph_cannot_run_goes_to_torch_in_words(model, tmp_path: Path):
    job = request(width=40, height=40)  # the tiny UNet halves its latent once: 16 px steps
    forced = choice.Accelerator("openvino", cache_dir=tmp_path)
    session = forced.prepare(model, job, 1, _quiet, _never)
    assert session.label == ""
    assert session.warnings == [
        "OpenVINO cannot run this job (it runs sizes that are multiples of 16 px; 40x40 is "
        "not); torch ran it."
    ]
    auto = choice.Accelerator("auto", cache_dir=tmp_path)
    assert auto.prepare(model, job, 1, _quiet, _never).warnings == []
    assert not (tmp_path / choice.CHOICES_FILE).exists()  # nothing measured, nothing kept


def test_a_compile_failure_at_one_size_keeps_torch_at_that_size_only(
    model, tmp_path: Path, monkeypatch
):
    def broken_compile(*_args: object) -> None:
        raise RuntimeError("shape inference failed")

    accelerator = choice.Accelerator("auto", cache_dir=tmp_path)
    monkeypatch.setattr(choice.int8, "available", lambda: False)
    monkeypatch.setattr(accelerator, "_openvino", lambda *_args: object())
    monkeypatch.setattr(accelerator, "_wants_openvino", lambda *_args: True)
    monkeypatch.setattr(accelerator, "_compile_ov", broken_compile)
    session = accelerator.prepare(model, request(width=64, height=64), 1, _quiet, _never)
    assert session.label == ""
    assert session.warnings == [
        "OpenVINO could not run this model (RuntimeError: shape inference failed); torch ran it."
    ]
    assert accelerator._remembered(model, choice.choice_shape(2, 64, 64)) == "torch"
    assert accelerator._remembered(model, choice.choice_shape(2, 32, 32)) is None
