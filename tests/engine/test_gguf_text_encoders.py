"""GGUF text encoders as ComfyUI-GGUF users have them (llama.cpp's tensor names): T5-XXL,
Qwen3 and Gemma 2 are found beside a model, read through transformers' GGUF loader,
dequantized to the job's precision (the status says so) and draw what the .safetensors
encoder draws; Qwen2.5-VL's, which transformers cannot read, is refused in a sentence
naming the file to use instead; Wan's UMT5 is not taken for T5-XXL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from model_helpers import Recorder, never

from engine import component_files as cf
from engine import gguf_text_encoders
from engine.api import EngineError, ErrorKind
from tests.single_file_cases import CASES, assert_same_pixels, cpu_manager, load_error
from tests.tiny_gguf_encoders import write_gguf_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

# case -> the encoder file's key in the writer's files, the pipeline component, its kind,
# and a tensor name only llama.cpp's layout of that architecture has
ENCODERS = {
    "flux1-dev": ("t5xxl", "text_encoder_2", cf.T5, "enc.blk.0.attn_rel_b.weight"),
    "zimage": ("qwen3", "text_encoder", cf.QWEN3, "blk.0.attn_q_norm.weight"),
    "flux2-klein": ("qwen3", "text_encoder", cf.QWEN3, "blk.0.attn_k_norm.weight"),
    "sana": ("gemma", "text_encoder", cf.GEMMA2, "blk.0.post_attention_norm.weight"),
}


def _as_gguf(files: object, reference: object, name: str, quantize: bool) -> Path:
    """Replace the case's encoder file by its GGUF (the .safetensors one removed)."""
    key, component, kind, _ = ENCODERS[name]
    old: Path = files.text_encoders[key]  # type: ignore[attr-defined]
    target = old.with_name(f"{old.stem}-{'Q8_0' if quantize else 'F32'}.gguf")
    write_gguf_encoder(getattr(reference, component), kind, target, quantize=quantize)
    old.unlink()
    return target


@pytest.mark.parametrize("name", list(ENCODERS))
def test_a_gguf_encoder_draws_what_its_safetensors_file_draws(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    files, reference = case.write(tmp_path)
    encoder = _as_gguf(files, reference, name, quantize=False)
    _, _, kind, llama_cpp_name = ENCODERS[name]
    assert llama_cpp_name in {t.name for t in GGUFReader(str(encoder)).tensors}
    assert cf.inspect(encoder).kind == kind

    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert f"{encoder.name}: GGUF, dequantized to float32" in model.notes
    assert_same_pixels(case.picture(model.pipe), case.picture(reference))


def test_a_quantized_t5_runs_dequantized_and_the_status_names_it(tmp_path: Path) -> None:
    case = CASES["flux1-dev"]
    files, reference = case.write(tmp_path)
    encoder = _as_gguf(files, reference, "flux1-dev", quantize=True)
    model = cpu_manager(files.config_root, "bfloat16").get(
        str(files.transformer), Recorder(), never
    )

    assert f"{encoder.name}: GGUF Q8_0, dequantized to bfloat16" in model.notes
    attention = model.pipe.text_encoder_2.encoder.block[0].layer[0].SelfAttention
    assert attention.q.weight.dtype == torch.bfloat16  # dequantized once, not kept in Q8_0
    image = case.picture(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - case.picture(reference)).mean() < 0.05


def test_a_qwen25_vl_gguf_is_refused_in_a_sentence_naming_the_safetensors_file(
    tmp_path: Path,
) -> None:
    from tests.tiny_qwen_files import write_qwen_files

    files, reference = write_qwen_files(tmp_path)
    old = files.text_encoders["qwen2.5-vl"]
    encoder = write_gguf_encoder(
        reference.text_encoder.model.language_model,
        cf.QWEN25_VL,
        old.with_name("Qwen2.5-VL-7B-Instruct-Q8_0.gguf"),
    )
    old.unlink()
    assert cf.inspect(encoder).kind == cf.QWEN25_VL
    with pytest.raises(EngineError) as caught:
        cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert caught.value.kind == ErrorKind.MODEL
    message = caught.value.message
    assert message.startswith("Qwen2.5-VL-7B-Instruct-Q8_0.gguf is a GGUF")
    assert "qwen_2.5_vl_7b_fp8_scaled.safetensors" in message


def test_a_safetensors_encoder_beside_a_gguf_one_is_preferred(tmp_path: Path) -> None:
    case = CASES["zimage"]
    files, reference = case.write(tmp_path)
    safetensors = files.text_encoders["qwen3"]
    write_gguf_encoder(reference.text_encoder, cf.QWEN3, safetensors.with_suffix(".gguf"))
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert not any(".gguf" in note for note in model.notes)


def test_a_gguf_encoder_named_by_hand_is_taken(tmp_path: Path) -> None:
    case = CASES["zimage"]
    files, reference = case.write(tmp_path)
    elsewhere = tmp_path / "downloads" / "Qwen3-4B-F32.gguf"
    elsewhere.parent.mkdir()
    write_gguf_encoder(reference.text_encoder, cf.QWEN3, elsewhere, quantize=False)
    files.text_encoders["qwen3"].unlink()
    manager = cpu_manager(files.config_root)
    with pytest.raises(EngineError, match="needs the Qwen3 text encoder"):
        manager.get(str(files.transformer), Recorder(), never)
    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    assert_same_pixels(case.picture(model.pipe), case.picture(reference))


def test_gguf_files_that_are_no_text_encoder_are_passed_over(tmp_path: Path) -> None:
    from tests.tiny_flow_files import write_gguf

    files, _ = CASES["flux1-dev"].write(tmp_path)
    transformer = write_gguf(files.transformer, files.models / "text_encoders" / "flux.gguf")
    assert cf.inspect(transformer) == cf.WeightFile(transformer, "", 0, "")
    broken = files.models / "text_encoders" / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    assert cf.inspect(broken).kind == ""
    # Neither stands in the way of the real encoders beside them.
    cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)


def test_a_gguf_encoder_is_sized_at_the_precision_it_is_dequantized_to(tmp_path: Path) -> None:
    from engine import memory_policy

    case = CASES["zimage"]
    files, reference = case.write(tmp_path)
    encoder = write_gguf_encoder(reference.text_encoder, cf.QWEN3, tmp_path / "q.gguf")
    # As much as the same encoder's .safetensors file takes at bfloat16.
    as_safetensors = memory_policy.file_bytes_at(files.text_encoders["qwen3"], torch.bfloat16)
    assert gguf_text_encoders.weights_bytes(encoder, 2) == as_safetensors


def test_wans_umt5_gguf_is_not_taken_for_flux_t5(tmp_path: Path) -> None:
    """UMT5-XXL (Wan's encoder) has T5-XXL's layout and width but another vocabulary."""
    files, reference = CASES["flux1-dev"].write(tmp_path)
    t5 = files.text_encoders["t5xxl"]
    umt5 = write_gguf_encoder(
        reference.text_encoder_2, cf.T5, t5.with_name("umt5-xxl-encoder-Q8_0.gguf"), name="umt5-xxl"
    )
    t5.unlink()
    assert cf.inspect(umt5).kind == ""
    message = load_error(cpu_manager(files.config_root), files.transformer)
    assert message.startswith("FLUX.1 needs the T5-XXL text encoder")
