"""The search tool: BM25 over a local corpus with a cached index, and the optional web backend."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import misstep
import misstep_tools.search as search_module
from misstep_tools.search import Search

PASSAGES = [
    {"title": "Genghis Khan", "text": "Genghis Khan was the founder and first Great Khan of the Mongol Empire."},
    {"title": "Julius Caesar", "text": "Julius Caesar was a Roman general and statesman; he had three children."},
    {"title": "Mongol Empire", "text": "The Mongol Empire was the largest contiguous land empire in history."},
    {"title": "Durmstrang", "text": "Durmstrang is a wizarding school; Igor Karkaroff was its headmaster."},
    {"title": "Paris", "text": "Paris is the capital of France. " + "It is known for art and food. " * 30},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES))
    return path


def test_top_passages_in_nat_shape(corpus: Path) -> None:
    tool = Search(Search.Options(corpus=corpus))
    observation = tool.run("Mongol Empire founder")
    assert observation.startswith(" #1: Genghis Khan: Genghis Khan was the founder")
    assert " #2: Mongol Empire: The Mongol Empire was the largest" in observation
    assert " #3: " not in observation  # only passages that share a word with the query
    assert Search(Search.Options(corpus=corpus, k=1)).run("Mongol").count(" #") == 1


def test_snippets_are_cut_and_titles_optional(corpus: Path) -> None:
    observation = Search(Search.Options(corpus=corpus, title=None, snippet_chars=60)).run("capital of France")
    first = observation.split(" #2:")[0]
    assert first.startswith(" #1: Paris is the capital of France.") and first.endswith(" ...")
    assert len(first) <= len(" #1: ") + 60 + len(" ...")


@pytest.mark.parametrize(("query", "observation"), [
    ("", "Error: empty query; write search[some words]"),
    ('  ""  ', "Error: empty query; write search[some words]"),
    ("?!", "Error: the query has no words"),
    ("x" * 301, "Error: the query is longer than 300 characters"),
    ("quantum chromodynamics", "No results for 'quantum chromodynamics'."),
])
def test_bad_queries_are_observations(corpus: Path, query: str, observation: str) -> None:
    assert Search(Search.Options(corpus=corpus)).run(query) == observation


def test_quoted_query(corpus: Path) -> None:
    assert Search(Search.Options(corpus=corpus)).run('"Karkaroff"').startswith(" #1: Durmstrang:")


def test_index_is_cached_next_to_the_corpus_and_rebuilt_when_it_changes(corpus: Path, monkeypatch) -> None:
    Search(Search.Options(corpus=corpus))
    cache = corpus.with_name("passages.jsonl.bm25.json")
    assert cache.is_file()

    def no_reading(*args, **kwargs):
        raise AssertionError("the corpus was read again although the cache matches it")

    with monkeypatch.context() as patch:
        patch.setattr(search_module, "read_passages", no_reading)
        assert Search(Search.Options(corpus=corpus)).run("Karkaroff").startswith(" #1: Durmstrang:")

    corpus.write_text(json.dumps({"title": "Karkaroff", "text": "Igor Karkaroff fled."}) + "\n")
    assert Search(Search.Options(corpus=corpus)).run("Karkaroff") == " #1: Karkaroff: Igor Karkaroff fled."
    cache.write_bytes(b"not an index")  # a broken cache is rebuilt, not trusted
    with pytest.warns(UserWarning, match=r"passages.jsonl.bm25.json is not a valid index \(the file: Invalid JSON"):
        assert Search(Search.Options(corpus=corpus)).run("Karkaroff") == " #1: Karkaroff: Igor Karkaroff fled."
    assert json.loads(cache.read_text())["passages"] == [["Karkaroff", "Igor Karkaroff fled."]]


class _WritesAFile:
    """Unpickling this opens (creates) ``path``: what a crafted index cache would do if it were loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_crafted_cache_is_never_executed(corpus: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"key": None, "index": _WritesAFile(marker)})
    corpus.with_name("passages.jsonl.bm25.pickle").write_bytes(payload)  # the old cache name: ignored
    cache = corpus.with_name("passages.jsonl.bm25.json")
    cache.write_bytes(payload)
    with pytest.warns(UserWarning, match="is not a valid index"):
        observation = Search(Search.Options(corpus=corpus)).run("Karkaroff")
    assert observation.startswith(" #1: Durmstrang:")
    assert not marker.exists()
    assert json.loads(cache.read_text())["key"]["sha256"]  # replaced by a JSON index
    pickle.loads(payload)["index"].close()  # the payload is live: loading it as a pickle creates the file
    assert marker.exists()


def test_cache_that_does_not_fit_its_corpus_is_rebuilt(corpus: Path) -> None:
    Search(Search.Options(corpus=corpus))
    cache = corpus.with_name("passages.jsonl.bm25.json")
    stored = json.loads(cache.read_text())
    stored["doc_len"] = stored["doc_len"][:2]
    cache.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="its passages and statistics do not match"):
        assert Search(Search.Options(corpus=corpus)).run("Karkaroff").startswith(" #1: Durmstrang:")
    stored["doc_freqs"][0] = {"mongol": "many"}
    cache.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match=r"doc_freqs.0.mongol: Input should be a valid integer"):
        Search(Search.Options(corpus=corpus))


def test_cached_index_scores_like_a_fresh_one(corpus: Path) -> None:
    fresh = Search(Search.Options(corpus=corpus, cache=False))
    Search(Search.Options(corpus=corpus))
    cached = Search(Search.Options(corpus=corpus))  # loaded from the JSON cache
    assert cached._index is not None and fresh._index is not None
    for query in (["mongol", "empire"], ["karkaroff"], ["paris", "art", "food"], ["nothing"]):
        assert list(cached._index.bm25.get_scores(query)) == list(fresh._index.bm25.get_scores(query))


def test_no_cache_option(corpus: Path) -> None:
    Search(Search.Options(corpus=corpus, cache=False))
    assert not corpus.with_name("passages.jsonl.bm25.json").exists()


def test_corpus_errors_name_the_file_and_line(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(misstep.DataError, match="corpus file not found"):
        Search(Search.Options(corpus=tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(misstep.DataError, match=r"bad.jsonl:2: expected an object with a text field 'text'"):
        Search(Search.Options(corpus=bad))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(misstep.DataError, match="no passages"):
        Search(Search.Options(corpus=empty))


def test_exactly_one_backend() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        Search.Options()
    with pytest.raises(ValueError, match="exactly one of"):
        Search.Options(corpus="a.jsonl", web={})


class _Serper(BaseHTTPRequestHandler):
    requests: list[tuple[str | None, dict]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.headers.get("X-API-KEY"), body))
        payload = json.dumps({"organic": [
            {"title": "Result one", "snippet": "First snippet.", "link": "http://a"},
            {"title": "Result two", "snippet": "Second snippet.", "link": "http://b"},
            {"title": "No snippet", "link": "http://c"},
            {"title": "Result four", "snippet": "Fourth snippet.", "link": "http://d"},
        ]}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serper() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Serper)
    _Serper.requests, _Serper.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/search"
    server.shutdown()
    server.server_close()


def test_web_backend_with_a_key(serper: str, monkeypatch) -> None:
    monkeypatch.setenv("TEST_SEARCH_KEY", "secret")
    tool = Search(Search.Options(web={"url": serper, "api_key_env": "TEST_SEARCH_KEY"}))
    assert tool.run("who was first") == (" #1: Result one: First snippet. #2: Result two: Second snippet."
                                         " #3: Result four: Fourth snippet.")
    assert _Serper.requests == [("secret", {"q": "who was first", "num": 3})]
    _Serper.status = 500
    assert tool.run("again").startswith("Error: the web search failed (")


def test_web_backend_needs_a_key(monkeypatch) -> None:
    monkeypatch.delenv("TEST_SEARCH_KEY", raising=False)
    with pytest.raises(misstep.ComponentError, match="TEST_SEARCH_KEY"):
        Search(Search.Options(web={"api_key_env": "TEST_SEARCH_KEY"}))


def test_web_backend_unreachable(monkeypatch) -> None:
    monkeypatch.setenv("TEST_SEARCH_KEY", "secret")
    tool = Search(Search.Options(web={"url": "http://127.0.0.1:9/search", "api_key_env": "TEST_SEARCH_KEY",
                                      "timeout": 2}))
    assert tool.run("anything").startswith("Error: the web search failed (")
