"""Damaged, lying or hostile model files: each a MODEL error naming the file, nothing from
the file is ever executed, and the next job finishes."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch
from engine_helpers import WAIT, request
from reliability_helpers import next_job_finishes, one_sentence
from safetensors.torch import save_file
from tiny_models import save_tiny_model

from engine.api import ErrorKind, Failed
from engine.model_code import NEVER_RUNS_CODE

ENGINE_DIR = Path(__file__).resolve().parents[2] / "engine"


def fails_naming(engine, source: Path | str, *words: str) -> str:
    result = engine.generate(request(model=str(source)), WAIT)
    assert isinstance(result, Failed), result
    assert result.error == ErrorKind.MODEL, result
    one_sentence(result.message)
    name = Path(source).name
    assert name in result.message, result.message
    for word in words:
        assert word in result.message, result.message
    next_job_finishes(engine)
    return result.message


class Marker:
    """A pickle that, if unpickled with the full unpickler, writes a marker file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"echo owned > {self.path}",))


def malicious_pickle(path: Path, marker: Path) -> Path:
    torch.save(
        {"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "x": Marker(marker)}, path
    )
    return path


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("folder") / "tiny-model")


def copy_folder(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


# ----------------------------------------------------------------------------- safetensors


def test_an_empty_safetensors_file(real_engine, tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    fails_naming(real_engine, path, "download it again")


def test_a_truncated_safetensors_file(real_engine, tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file({"model.diffusion_model.w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:-1000])
    fails_naming(real_engine, path, "truncated or damaged")


def test_a_safetensors_header_that_lies_about_its_tensors(real_engine, tmp_path):
    header = json.dumps(
        {
            "model.diffusion_model.w": {
                "dtype": "F32",
                "shape": [1000, 1000],
                "data_offsets": [0, 4_000_000],
            }
        }
    ).encode()
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    fails_naming(real_engine, path, "not a readable .safetensors file")


def test_an_absurd_safetensors_header_length(real_engine, tmp_path):
    path = tmp_path / "huge-header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    fails_naming(real_engine, path, "not a readable .safetensors file")


def test_a_safetensors_header_that_is_not_json(real_engine, tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 8) + b"\xff" * 8 + b"\0" * 8)
    fails_naming(real_engine, path, "not a readable .safetensors file")


def test_a_file_of_the_wrong_family(real_engine, tmp_path):
    path = tmp_path / "classifier.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    fails_naming(real_engine, path, "is not a Stable Diffusion checkpoint")


def test_a_lora_is_not_a_model(real_engine, tmp_path):
    path = tmp_path / "style.safetensors"
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(2, 2)}, path)
    fails_naming(real_engine, path, "LoRA")


def test_a_checkpoint_with_a_unet_and_nothing_else(real_engine, tmp_path):
    path = tmp_path / "unet-only.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, path)
    fails_naming(real_engine, path, "no text encoder")


# ----------------------------------------------------------------------------- folders


def test_a_broken_model_index(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "broken-index")
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", ')
    fails_naming(real_engine, folder, "model_index.json")


def test_a_deeply_nested_model_index(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "deep-index")
    (folder / "model_index.json").write_text("[" * 200_000 + "]" * 200_000)
    fails_naming(real_engine, folder)


def test_a_folder_missing_its_unet_weights(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "no-unet")
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    fails_naming(real_engine, folder, "unet")


def test_a_pickle_checkpoint_is_refused_without_the_option(real_engine, tmp_path):
    path = torch.save({"a": torch.zeros(1)}, tmp_path / "old.ckpt") or tmp_path / "old.ckpt"
    fails_naming(real_engine, path, "--allow-pickle")


# ----------------------------------------------------------------------------- code


def test_a_malicious_pickle_is_refused_even_with_allow_pickle(pickle_engine, tmp_path):
    marker = tmp_path / "owned"
    path = malicious_pickle(tmp_path / "evil.ckpt", marker)
    fails_naming(pickle_engine, path, NEVER_RUNS_CODE)
    assert not marker.exists(), "the pickle's code ran"


def test_a_malicious_bin_inside_a_folder_is_refused_even_with_allow_pickle(
    pickle_engine, tmp_path, tiny_folder
):
    folder = copy_folder(tiny_folder, tmp_path / "evil-folder")
    marker = tmp_path / "owned"
    for weights in (folder / "vae").glob("*.safetensors"):
        weights.unlink()
    malicious_pickle(folder / "vae" / "diffusion_pytorch_model.bin", marker)
    fails_naming(pickle_engine, folder, NEVER_RUNS_CODE)
    assert not marker.exists(), "the pickle's code ran"


def test_a_custom_pipeline_class_is_refused_and_its_code_never_imported(
    real_engine, tmp_path, tiny_folder
):
    folder = copy_folder(tiny_folder, tmp_path / "custom")
    marker = tmp_path / "owned"
    (folder / "pipeline.py").write_text(f"open({str(marker)!r}, 'w').write('owned')\n")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["pipeline", "MyPipeline"]
    (folder / "model_index.json").write_text(json.dumps(index))
    fails_naming(real_engine, folder, NEVER_RUNS_CODE)
    index["_class_name"] = "MyOwnPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    fails_naming(real_engine, folder, "custom pipeline")
    assert not marker.exists()


def test_a_component_from_another_module_is_refused(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "other-module")
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["my_models", "FastUNet"]
    (folder / "model_index.json").write_text(json.dumps(index))
    fails_naming(real_engine, folder, "my_models", NEVER_RUNS_CODE)


def test_a_transformers_auto_class_is_refused(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "auto-class")
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "AutoModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    fails_naming(real_engine, folder, "AutoModel", NEVER_RUNS_CODE)


def test_remote_code_in_a_component_config_is_refused(real_engine, tmp_path, tiny_folder):
    folder = copy_folder(tiny_folder, tmp_path / "remote-code")
    config_path = folder / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    config_path.write_text(json.dumps(config))
    message = fails_naming(real_engine, folder, "auto_map", NEVER_RUNS_CODE)
    assert "text_encoder" in message


def test_every_torch_load_in_the_engine_is_weights_only():
    calls = []
    for path in ENGINE_DIR.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path.name, text[match.start() : end + 1]))
    assert calls, "the scan found no torch.load at all: is it looking in the right place?"
    unsafe = [(name, call) for name, call in calls if "weights_only=True" not in call]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
