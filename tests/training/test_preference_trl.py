"""The peer as the oracle: misstep's dpo, kto and simpo losses equal TRL's DPOTrainer, KTOTrainer and CPOTrainer
(SimPO) on the same single-turn data, tiny model, reference model and beta: loss, gradients and logged metrics.

TRL tokenizes the data; its token ids go into misstep's continuation batches (every completion token trained,
as TRL trains them), the reference log-probabilities come from misstep's pre-pass scoring of the same reference
model, and misstep's shared-prompt batch is scored by misstep's own forward pass.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from misstep import collate_continuations
from misstep.builtin.preference import DPO, KTO, SimPO
from misstep.training.encode import add_mismatched
from misstep.training.reference import score

from train_helpers import assert_same_gradients, gradients, load_model, perturbed

trl = pytest.importorskip("trl", minversion="1.16")  # its 1.x API: loss_type lists, trl.experimental.cpo
datasets = pytest.importorskip("datasets")

PROMPTS = ["What is 3 * 12?", "Tom has 3 bags with 12 apples. How many apples?", "Is 7 prime?"]
GOOD = ["Action: Finish[36]", "Thought: multiply.\nAction: Calculator[3 * 12]", "Yes."]
BAD = ["Action: Finish[35]", "no", "Thought: 7 is 3 + 4.\nAction: Finish[No]"]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def trl_loss(trainer: Any, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
    """TRL's loss on ``rows`` (one batch, in order) and the metrics it logged for it."""
    trainer.model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(rows))
    return loss, {key: values[-1] for key, values in trainer._metrics["train"].items()}


def with_reference(features: list[dict[str, Any]], reference: torch.nn.Module) -> list[dict[str, Any]]:
    for row, logps in zip(features, score(reference, features, "cpu")):
        row["reference"] = logps
    return features


@pytest.fixture
def tokenizer(tiny_model: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model)


def dpo_trainer(tiny_model: Path, tokenizer: Any, tmp_path: Path, **config: Any) -> Any:
    data = datasets.Dataset.from_list([{"prompt": user(p), "chosen": assistant(g), "rejected": assistant(b)}
                                       for p, g, b in zip(PROMPTS, GOOD, BAD)])
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(PROMPTS), report_to="none",
                         use_cpu=True, max_length=None, **config)
    return trl.DPOTrainer(model=load_model(tiny_model), ref_model=perturbed(load_model(tiny_model)), args=args,
                          train_dataset=data, processing_class=tokenizer)


@pytest.mark.parametrize(("loss_type", "beta", "sft_weight"), [
    ("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.0), ("ipo", 0.1, 0.0), ("hinge", 0.5, 0.0), ("sigmoid", 0.1, 0.7)])
def test_dpo_equals_trl_dpo_trainer(tiny_model: Path, tokenizer: Any, tmp_path: Path, loss_type: str, beta: float,
                                    sft_weight: float) -> None:
    # TRL's RPO term is its "sft" loss type added with a weight
    types = {"loss_type": [loss_type, "sft"], "loss_weights": [1.0, sft_weight]} if sft_weight else \
        {"loss_type": [loss_type]}
    trainer = dpo_trainer(tiny_model, tokenizer, tmp_path, beta=beta, **types)
    rows = [dict(row) for row in trainer.train_dataset]
    expected, logged = trl_loss(trainer, rows)
    expected.backward()

    features = with_reference([{"prompt_ids": r["prompt_ids"], "candidate_ids": [r["chosen_ids"], r["rejected_ids"]],
                                "candidate_trained": [[True] * len(r["chosen_ids"]), [True] * len(r["rejected_ids"])],
                                "rewards": [1.0, 0.0]} for r in rows], trainer.ref_model)
    policy = load_model(tiny_model)
    out = DPO(DPO.Options(beta=beta, loss_type=loss_type, sft_weight=sft_weight)).compute(
        policy, collate_continuations(features))
    out.loss.backward()

    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-4)
    assert abs(expected.item() - 0.6931) > 1e-3 or loss_type != "sigmoid"  # the reference differs: not log 2
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"):
        assert out.metrics[key] == pytest.approx(logged[key], abs=1e-4), key
    assert_same_gradients(gradients(policy), gradients(trainer.model), rel=1e-4)  # TRL sums in tiles


def test_kto_equals_trl_kto_trainer(tiny_model: Path, tokenizer: Any, tmp_path: Path) -> None:
    labelled = [(p, g, True) for p, g in zip(PROMPTS, GOOD)] + [(p, b, False) for p, b in zip(PROMPTS[:2], BAD[:2])]
    data = datasets.Dataset.from_list([{"prompt": user(p), "completion": assistant(c), "label": label}
                                       for p, c, label in labelled])
    args = trl.KTOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(labelled), report_to="none",
                         use_cpu=True, beta=0.3, desirable_weight=1.0, undesirable_weight=1.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.KTOTrainer(model=load_model(tiny_model), ref_model=perturbed(load_model(tiny_model)), args=args,
                                 train_dataset=data, processing_class=tokenizer)
    rows = [dict(row) for row in trainer.train_dataset]
    expected, logged = trl_loss(trainer, rows)
    expected.backward()

    features: list[Any] = [{"prompt_ids": r["prompt_ids"], "candidate_ids": [r["completion_ids"]],
                            "candidate_trained": [[True] * len(r["completion_ids"])], "rewards": [0.0],
                            "desirable": r["label"]} for r in rows]
    add_mismatched(features, 1024)  # misstep's mismatched pairs are TRL's
    assert [f["candidate_ids"][1] for f in features] == [r["KL_completion_ids"] for r in rows]
    policy = load_model(tiny_model)
    out = KTO(KTO.Options(beta=0.3, desirable_weight=1.0, undesirable_weight=1.4)).compute(
        policy, collate_continuations(with_reference(features, trainer.ref_model)))
    out.loss.backward()

    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-4)
    assert logged["kl"] > 0  # the KL term takes part
    for key in ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert out.metrics[key] == pytest.approx(logged[key], abs=1e-4), key
    assert_same_gradients(gradients(policy), gradients(trainer.model), rel=1e-4)  # TRL sums in tiles


def test_simpo_equals_trl_cpo_trainer_with_simpo(tiny_model: Path, tokenizer: Any, tmp_path: Path) -> None:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    data = datasets.Dataset.from_list([{"prompt": user(p), "chosen": assistant(g), "rejected": assistant(b)}
                                       for p, g, b in zip(PROMPTS, GOOD, BAD)])
    args = CPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(PROMPTS), report_to="none",
                     use_cpu=True, loss_type="simpo", cpo_alpha=0.0, beta=2.0, simpo_gamma=0.8,
                     remove_unused_columns=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = CPOTrainer(model=load_model(tiny_model), args=args, train_dataset=data, processing_class=tokenizer)
    rows = [dict(row) for row in trainer.train_dataset]
    trainer.model.train()
    expected, logged = trainer.get_batch_loss_metrics(trainer.model, trainer.data_collator(rows))
    expected.backward()

    def side(row: dict[str, Any], name: str) -> list[int]:
        return row[f"{name}_input_ids"][len(row["prompt_input_ids"]):]

    features = [{"prompt_ids": r["prompt_input_ids"], "candidate_ids": [side(r, "chosen"), side(r, "rejected")],
                 "candidate_trained": [[True] * len(side(r, "chosen")), [True] * len(side(r, "rejected"))],
                 "rewards": [1.0, 0.0]} for r in rows]
    assert all(r["chosen_labels"][len(r["prompt_input_ids"]):] == side(r, "chosen") for r in rows)
    policy = load_model(tiny_model)
    out = SimPO(SimPO.Options(beta=2.0, gamma=0.8)).compute(policy, collate_continuations(features))
    out.loss.backward()

    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-4)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"):
        assert out.metrics[key] == pytest.approx(logged[key], abs=1e-4), key
    assert_same_gradients(gradients(policy), gradients(trainer.model), rel=1e-4)  # TRL sums in tiles


def test_the_reference_model_is_scored_as_trl_scores_it(tiny_model: Path, tokenizer: Any, tmp_path: Path) -> None:
    trainer = dpo_trainer(tiny_model, tokenizer, tmp_path, beta=0.1, precompute_ref_log_probs=True)
    rows = [dict(row) for row in trainer.train_dataset]
    features = with_reference([{"prompt_ids": r["prompt_ids"], "candidate_ids": [r["chosen_ids"], r["rejected_ids"]],
                                "candidate_trained": [[True] * len(r["chosen_ids"]), [True] * len(r["rejected_ids"])],
                                "rewards": [1.0, 0.0]} for r in rows], trainer.ref_model)
    for row, feature in zip(rows, features):
        assert feature["reference"] == pytest.approx([row["ref_chosen_logps"], row["ref_rejected_logps"]], rel=1e-5)


def test_misstep_encodes_single_turn_pairs_as_trl_does_but_the_newline_after_the_turn(
        tiny_model: Path, tokenizer: Any, tmp_path: Path) -> None:
    from misstep.datamodel import Message, PreferenceExample
    from misstep.training.encode import encode_preference

    trainer = dpo_trainer(tiny_model, tokenizer, tmp_path, beta=0.1)
    for row, prompt, good, bad in zip(trainer.train_dataset, PROMPTS, GOOD, BAD):
        pair = PreferenceExample(id="p", prompt=[Message(role="user", content=prompt)],
                                 chosen=[Message(role="assistant", content=good)],
                                 rejected=[Message(role="assistant", content=bad)])
        features = encode_preference(pair, tokenizer, 1024)
        assert features is not None and features["prompt_ids"] == row["prompt_ids"]
        for ids, trained, theirs in zip(features["candidate_ids"], features["candidate_trained"],
                                        (row["chosen_ids"], row["rejected_ids"])):
            # every token trained, up to and including <|im_end|>; TRL's side also holds (and trains) the
            # newline the template writes after it
            assert ids == theirs[:-1] and all(trained) and tokenizer.decode(theirs[-2:]) == "<|im_end|>\n"
