"""The public loss contract: each token's example (label, reward, metadata) reaches the loss through padded
and packed batches, from the reformatter's Example through the train stage, and a loss written from
docs/plugins.md alone can weigh negative examples differently."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import misstep

from train_helpers import MESSAGES, recipe, train_stage, varied

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def docs_loss_plugin() -> types.ModuleType:
    """The loss example of docs/plugins.md, as a plugin module."""
    block = re.search(r"<!-- scaffold: loss [\w-]+ -->\n`[^`]+`:\n\n```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block, "docs/plugins.md has no loss example"
    module = types.ModuleType("misstep_docs_loss")
    exec(compile(block.group(1), str(DOCS), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def setup(tiny_model: Path) -> tuple[Any, int, list[misstep.Encoded]]:
    """A tiny model and three encoded examples of different lengths: positive, negative, positive."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    labels = ["positive", "negative", "positive"]
    examples = [misstep.Example(id=f"e{i}", messages=varied(3 * i), label=label, reward=float(i), metadata={"n": i})
                for i, label in enumerate(labels)]
    return model, tokenizer.pad_token_id, [misstep.encode_example(e, tokenizer, 1024) for e in examples]


def one_by_one(model: Any, encoded: list[misstep.Encoded]) -> list[tuple[float, int]]:
    """Each example alone: the weighted sum of its tokens' cross-entropy, and how many are trained."""
    sums = []
    with torch.no_grad():
        for example in encoded:
            scores = misstep.token_logprobs(model, misstep.collate_padded([example], pad_id=0))
            sums.append((float(-(scores.logprobs * scores.weights).sum()), scores.count))
    return sums


def batches(pad_id: int, encoded: list[misstep.Encoded]) -> list[dict[str, Any]]:
    total = sum(len(e.input_ids) for e in encoded)
    return [misstep.collate_padded(encoded, pad_id), misstep.collate_packed(encoded),
            misstep.collate_packed(encoded, max_tokens=total)]


def test_every_token_knows_its_example_padded_and_packed(setup) -> None:
    model, pad_id, encoded = setup
    alone = one_by_one(model, encoded)
    for batch in batches(pad_id, encoded):
        assert [(e.id, e.label, e.reward, e.metadata) for e in batch["examples"]] == [
            ("e0", "positive", 0.0, {"n": 0}), ("e1", "negative", 1.0, {"n": 1}), ("e2", "positive", 2.0, {"n": 2})]
        for index, example in enumerate(encoded):  # every token of the example, and only those, points to it
            assert int((batch["example_index"] == index).sum()) == len(example.input_ids)
        scores = misstep.token_logprobs(model, batch)
        assert scores.examples == 3 and scores.count == sum(count for _, count in alone)
        torch.testing.assert_close(scores.per_example(-scores.logprobs * scores.weights),
                                   torch.tensor([total for total, _ in alone]), atol=1e-4, rtol=1e-5)


def test_the_loss_from_the_docs_weighs_negatives_padded_and_packed(setup) -> None:
    model, pad_id, encoded = setup
    plugins = misstep.Plugins(entry_points=False)
    plugins.add(docs_loss_plugin(), "docs-loss")
    name = next(n for n, entry in plugins.registry["loss"].items()
                if entry.plugin == "docs-loss")  # the docs' loss, whatever it is called
    (positive, count0), (negative, count1), (other, count2) = one_by_one(model, encoded)
    tokens = count0 + count1 + count2
    for batch in batches(pad_id, encoded):
        for weight in (0.0, 0.3, 1.0):
            loss = plugins.create("loss", name, {"negative_weight": weight}).compute(model, batch).loss
            expected = (positive + other + weight * negative) / tokens
            torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-5, rtol=1e-5)
        # the step's trained tokens, when the trainer passes them, are the denominator
        loss = plugins.create("loss", name, {"negative_weight": 1.0}).compute(
            model, {**batch, "num_items_in_batch": torch.tensor(2 * tokens)}).loss
        torch.testing.assert_close(loss, torch.tensor((positive + other + negative) / (2 * tokens)), atol=1e-5,
                                   rtol=1e-5)


class Recording(misstep.Loss):
    """sft that records the examples of every batch it trains on."""

    name = "recording"
    per_token = True
    seen: list[tuple[str, str | None, float | None, dict[str, Any], int]] = []

    def compute(self, model, batch):  # type: ignore[no-untyped-def]
        for index, info in enumerate(batch["examples"]):
            tokens = int(((batch["example_index"] == index) & (batch["labels"] != misstep.IGNORE_INDEX)).sum())
            Recording.seen.append((info.id, info.label, info.reward, info.metadata, tokens))
        scores = misstep.token_logprobs(model, batch)
        return misstep.LossOutput(scores.nll(batch.get("num_items_in_batch")), scores.metrics())


class RecordingPlugin:
    @misstep.hookimpl
    def register_losses(self, register: misstep.Register) -> None:
        register(Recording)


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_the_train_stage_carries_labels_rewards_and_metadata_to_the_loss(packing: bool, tiny_model: Path,
                                                                         tmp_path: Path) -> None:
    examples = [misstep.Example(id=str(i), messages=MESSAGES, label=["positive", "negative"][i % 2], reward=i / 2,
                                metadata={"task_id": f"t{i}"}) for i in range(4)]
    misstep.write_jsonl(tmp_path / "examples.jsonl", examples)
    plugins = misstep.Plugins(entry_points=False)
    plugins.add(RecordingPlugin(), "recording")
    Recording.seen = []
    stage = train_stage(loss={"use": "recording"}, packing=packing, max_steps=1)
    run = misstep.run_recipe(recipe(tiny_model, tmp_path / "examples.jsonl", stage, plugins=plugins),
                             run_dir=tmp_path / "run", quiet=True)
    assert run.output("train", "examples") == 4
    tokens = run.output("train", "trained_tokens") // 4
    assert sorted(Recording.seen) == [(str(i), ["positive", "negative"][i % 2], i / 2, {"task_id": f"t{i}"}, tokens)
                                      for i in range(4)]
