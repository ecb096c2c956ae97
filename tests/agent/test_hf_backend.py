"""The ``hf`` backend on a tiny local model taught a ReAct reply per question: batching with left padding,
stop strings, sampling, beam search, limits."""

from __future__ import annotations

import shutil

import pytest

import misstep
from misstep.backends.hf import HFBackend
from misstep.testing import teach


def conversation(question):
    return [misstep.Message(role="user", content=f"Question: {question}")]


QUESTIONS = ["2+3?", "How many apples does Tom have after buying three bags of twelve?", "1?"]
REPLIES = ["Thought: add\nAction: calculator[2+3]", "Thought: three bags\nAction: calculator[3*12]",
           "Thought: it is one\nAction: finish[1]"]
GREEDY = misstep.Sampling(temperature=0.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def model(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("taught") / "model"
    shutil.copytree(tiny_model, folder)
    return teach(folder, [(conversation(q), reply) for q, reply in zip(QUESTIONS, REPLIES)], steps=120,
                 learning_rate=0.01)


@pytest.fixture(scope="module")
def backend(model):
    hf = HFBackend(HFBackend.Options(model=misstep.ModelSpec(path=str(model)), device="cpu"))
    yield hf
    hf.close()


def test_a_batch_with_left_padding_gives_what_each_conversation_gives_alone(backend):
    together = backend.generate([conversation(q) for q in QUESTIONS], [GREEDY] * 3)
    alone = [backend.generate([conversation(q)], [GREEDY])[0] for q in QUESTIONS]
    assert together == alone == REPLIES  # the end-of-turn token ends each reply


def test_a_final_assistant_message_is_continued(backend):
    prefilled = [*conversation(QUESTIONS[1]), misstep.Message(role="assistant", content="Thought: three bags\nAction:")]
    [rest] = backend.generate([prefilled], [GREEDY])
    assert "Thought: three bags\nAction:" + rest == REPLIES[1]


def test_max_new_tokens_bounds_each_reply(backend):
    short, long = (backend.generate([conversation("2+3?")], [misstep.Sampling(max_new_tokens=n)])[0] for n in (5, 24))
    assert short and len(short) < len(long)
    assert long.startswith(short[:-1])  # the last token of the short reply may be part of one character


def test_each_row_stops_at_its_stop_string(backend):
    stopping = misstep.Sampling(temperature=0.0, max_new_tokens=24, stop=("\nAction:", "[3"))
    cut = backend.generate([conversation(q) for q in QUESTIONS], [stopping] * 3)
    assert cut == ["Thought: add", "Thought: three bags", "Thought: it is one"]
    calls = backend.generate([conversation(q) for q in QUESTIONS], [misstep.Sampling(stop=("[3",))] * 3)
    assert calls == [REPLIES[0], "Thought: three bags\nAction: calculator", REPLIES[2]]


def test_sampling_is_seeded_and_groups_by_settings(backend):
    hot = misstep.Sampling(temperature=1.0, max_new_tokens=16, seed=7)
    mixed = backend.generate([conversation(q) for q in QUESTIONS], [hot, GREEDY, hot])
    assert mixed == backend.generate([conversation(q) for q in QUESTIONS], [hot, GREEDY, hot])
    assert mixed[1] == backend.generate([conversation(QUESTIONS[1])], [GREEDY])[0]  # the greedy group alone
    assert mixed[0::2] == backend.generate([conversation(QUESTIONS[0]), conversation(QUESTIONS[2])], [hot, hot])
    other = misstep.Sampling(temperature=1.0, max_new_tokens=16, seed=8)
    assert backend.generate([conversation(QUESTIONS[0])] * 2, [other] * 2) != mixed[0::2]


def test_a_conversation_beyond_the_context_gets_an_empty_reply(backend):
    model, _ = backend.load()
    long = conversation("two " * (model.config.max_position_embeddings + 10))
    with pytest.warns(UserWarning, match="fill the context"):
        replies = backend.generate([long, conversation("1?")], [GREEDY] * 2)
    assert replies[0] == "" and replies[1]


def test_the_model_name_is_the_spec_path(backend, model):
    assert backend.model_name == str(model)
    assert backend.generate([], []) == []


def test_beam_search_returns_the_best_beams_best_first(backend):
    beams = misstep.Sampling(max_new_tokens=12, num_beams=4)
    replies = backend.generate_n([conversation(q) for q in QUESTIONS], [beams] * 3, 3)
    assert [len(r) for r in replies] == [3, 3, 3]
    assert replies == backend.generate_n([conversation(q) for q in QUESTIONS], [beams] * 3, 3)  # deterministic
    assert [r[0] for r in replies] == backend.generate([conversation(q) for q in QUESTIONS], [beams] * 3)
    model, tokenizer = backend.load()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": f"Question: {QUESTIONS[0]}"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    direct = model.generate(**prompt, max_new_tokens=12, num_beams=4, num_return_sequences=3, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    assert replies[0] == tokenizer.batch_decode(direct[:, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    with pytest.raises(misstep.ComponentError, match="5 replies asked of a beam search 4 wide"):
        backend.generate_n([conversation("1?")], [beams], 5)


def test_several_samples_per_conversation_are_seeded(backend):
    hot = misstep.Sampling(temperature=4.0, max_new_tokens=12, seed=3)  # hot: the taught model is sure
    replies = backend.generate_n([conversation(q) for q in QUESTIONS[:2]], [hot] * 2, 4)
    assert [len(r) for r in replies] == [4, 4]
    assert replies == backend.generate_n([conversation(q) for q in QUESTIONS[:2]], [hot] * 2, 4)
    assert len({text for group in replies for text in group}) > 2
