"""``misstep strategyqa-corpus``: a local search corpus for StrategyQA, standing in for NAT's web search.

One passage per training question (its annotated facts, titled with the question's Wikipedia term) and
one per test question (its explanation without the leading "Yes."/"No.", which would give the answer
away). Written as JSON Lines with ``title`` and ``text``, the shape the ``search`` tool reads. The test
explanations make the corpus hold the evidence for the test questions, as a web search would; say so when
reporting results obtained with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import misstep

_VERDICT = re.compile(r"^\s*(yes|no)\b[.,!:;]?\s*", re.IGNORECASE)


def without_verdict(explanation: str) -> str:
    """An explanation with its leading "Yes." / "No." removed."""
    return _VERDICT.sub("", explanation, count=1).strip()


def strategyqa_passages(train: Path, test: Path) -> Iterator[dict[str, str]]:
    """Passages from StrategyQA's training facts and test explanations (see the module docstring)."""
    for number, row in misstep.iter_json_rows(train):
        facts = row.get("facts")
        if not isinstance(facts, list) or not all(isinstance(fact, str) for fact in facts):
            raise misstep.DataError("expected `facts`: a list of strings (StrategyQA's training file)",
                                    path=train, line=number)
        text = " ".join(" ".join(fact.split()) for fact in facts)
        if text:
            yield {"title": str(row.get("term") or ""), "text": text}
    for number, row in misstep.iter_json_rows(test):
        explanation = row.get("explanation")
        if not isinstance(explanation, str):
            raise misstep.DataError("expected `explanation`: a string (StrategyQA's test file as NAT uses it)",
                                    path=test, line=number)
        text = without_verdict(explanation)
        if text:
            yield {"title": "", "text": text}


def register(cli: click.Group) -> None:
    """Add ``strategyqa-corpus`` to the ``misstep`` command line."""

    @cli.command("strategyqa-corpus")
    @click.argument("data", type=click.Path(file_okay=False, exists=True, path_type=Path))
    @click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--train", default="train.jsonl", show_default=True, help="Training questions in DATA.")
    @click.option("--test", default="test_random_500.jsonl", show_default=True, help="Test questions in DATA.")
    def strategyqa_corpus(data: Path, output: Path, train: str, test: str) -> None:
        """Write a search corpus (JSON Lines) for StrategyQA from the files in DATA.

        Training facts and test explanations (their leading Yes./No. removed), one passage per question:
        `search: {corpus: OUTPUT}` then answers from it instead of the web.
        """
        import json

        passages = list(strategyqa_passages(data / train, data / test))
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for passage in passages:
                handle.write(json.dumps(passage, ensure_ascii=False) + "\n")
        tmp.replace(output)
        click.echo(f"{len(passages)} passages -> {output}")
