"""search[query]: the top passages of a local corpus by BM25 (rank_bm25), shaped like NAT's web search
observations (" #1: ... #2: ... #3: ..."), or of a web search API when one is configured with a key.

The corpus is a JSON Lines file of passages. Its BM25 index is built once and stored next to it as JSON
(``<corpus>.bm25.json``, keyed by the corpus's SHA-256 and the options that shape the index), so later runs
load it; a changed corpus rebuilds it. The cache is data, never code: it is validated field by field, and a
cache that does not parse or does not fit the corpus is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import misstep
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rank_bm25 import BM25Okapi

CACHE_VERSION = 2
CACHE_SUFFIX = ".bm25.json"
_WORD = re.compile(r"\w+")
_QUOTES = "\"'`"


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits of any script)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Passage:
    text: str
    title: str = ""

    def snippet(self, limit: int) -> str:
        """``title: text`` with the text cut at a word boundary after ``limit`` characters."""
        text = " ".join(self.text.split())
        if len(text) > limit:
            text = text[:limit].rsplit(" ", 1)[0] + " ..."
        return f"{self.title}: {text}" if self.title else text


def format_hits(snippets: list[str]) -> str:
    """NAT's observation shape: `` #1: first #2: second #3: third``."""
    return "".join(f" #{rank}: {snippet}" for rank, snippet in enumerate(snippets, start=1))


@dataclass
class Index:
    """A BM25 index over passages."""

    passages: list[Passage]
    bm25: BM25Okapi

    def search(self, query: list[str], k: int) -> list[Passage]:
        """The ``k`` best passages that share at least one word with the query, best first."""
        scores = self.bm25.get_scores(query)
        words = set(query)
        matching = [i for i, counts in enumerate(self.bm25.doc_freqs) if not words.isdisjoint(counts)]
        matching.sort(key=lambda i: -scores[i])  # stable: ties keep corpus order
        return [self.passages[i] for i in matching[:k]]


def read_passages(path: Path, text_field: str, title_field: str | None) -> list[Passage]:
    """Passages of a JSONL (or JSON list) corpus; a bad line is a DataError naming it."""
    if not path.is_file():
        raise misstep.DataError("corpus file not found; set `corpus:` to a JSON Lines file of passages", path=path)
    passages = []
    for number, row in misstep.iter_json_rows(path):
        if not isinstance(row.get(text_field), str):
            raise misstep.DataError(f"expected an object with a text field {text_field!r}; set `text:` to the "
                                    "field holding the passage", path=path, line=number)
        title = row.get(title_field) if title_field else None
        passages.append(Passage(row[text_field], str(title) if title is not None else ""))
    if not passages:
        raise misstep.DataError("the corpus holds no passages", path=path)
    return passages


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _CachedIndex(BaseModel):
    """The index cache file: the key it was built for, the passages and rank_bm25's Okapi statistics."""

    model_config = ConfigDict(extra="forbid")

    key: dict[str, Any]
    passages: list[tuple[str, str]]
    corpus_size: int
    avgdl: float
    doc_freqs: list[dict[str, int]]
    doc_len: list[int]
    idf: dict[str, float]
    average_idf: float
    k1: float
    b: float
    epsilon: float


_BM25_STATE = ("corpus_size", "avgdl", "doc_freqs", "doc_len", "idf", "average_idf", "k1", "b", "epsilon")
"""The attributes of a built ``BM25Okapi`` that scoring reads: what the cache stores and restores."""


def _read_cache(cache_path: Path, key: dict[str, Any], corpus_bytes: int) -> Index | None:
    """The cached index when the file is a valid cache for ``key``; None (with a warning if broken) otherwise."""
    if not cache_path.is_file():
        return None
    try:
        if cache_path.stat().st_size > 50 * corpus_bytes + (1 << 20):
            raise ValueError("it is far larger than the corpus")
        stored = _CachedIndex.model_validate_json(cache_path.read_bytes())
        if stored.key != key:
            return None  # built for another corpus or other fields
        if not len(stored.passages) == len(stored.doc_freqs) == len(stored.doc_len) == stored.corpus_size > 0:
            raise ValueError("its passages and statistics do not match")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        _warn_rebuilt(cache_path, f"{where}: {first['msg']}")
        return None
    except (OSError, ValueError) as error:
        _warn_rebuilt(cache_path, str(error))
        return None
    bm25 = BM25Okapi.__new__(BM25Okapi)
    for name in _BM25_STATE:
        setattr(bm25, name, getattr(stored, name))
    return Index([Passage(text, title) for title, text in stored.passages], bm25)


def _warn_rebuilt(cache_path: Path, reason: str) -> None:
    warnings.warn(f"the search index cache {cache_path} is not a valid index ({reason[:200]}); it is rebuilt",
                  stacklevel=4)


def _write_cache(cache_path: Path, key: dict[str, Any], index: Index) -> None:
    cached = _CachedIndex.model_construct(key=key, passages=[(p.title, p.text) for p in index.passages],
                                          **{name: getattr(index.bm25, name) for name in _BM25_STATE})
    temporary = cache_path.with_name(cache_path.name + f".tmp{os.getpid()}")
    try:
        temporary.write_text(cached.model_dump_json(), encoding="utf-8")
        os.replace(temporary, cache_path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        warnings.warn(f"could not cache the search index at {cache_path} ({error}); it is rebuilt next time",
                      stacklevel=3)


def load_index(path: Path, text_field: str, title_field: str | None, *, cache: bool = True) -> Index:
    """The corpus's index: from the cache next to it when that matches the corpus, else built (and cached)."""
    digest = file_digest(path) if path.is_file() else ""
    key = {"version": CACHE_VERSION, "sha256": digest, "text": text_field, "title": title_field}
    cache_path = path.with_name(path.name + CACHE_SUFFIX)
    if cache and digest and (index := _read_cache(cache_path, key, path.stat().st_size)) is not None:
        return index
    passages = read_passages(path, text_field, title_field)
    index = Index(passages, BM25Okapi([tokenize(f"{p.title} {p.text}") for p in passages]))
    if cache:
        _write_cache(cache_path, key, index)
    return index


class WebSearch(BaseModel):
    """A Serper-style web search API: POST ``{"q": query}`` with the key in ``X-API-KEY``; ``organic`` hits."""

    model_config = ConfigDict(extra="forbid")

    url: str = "https://google.serper.dev/search"
    api_key_env: str = Field(default="SERPER_API_KEY", description="environment variable holding the API key")
    timeout: float = Field(default=10.0, gt=0, description="seconds per request")

    def search(self, query: str, key: str, k: int, limit: int) -> list[str]:
        request = urllib.request.Request(
            self.url, data=json.dumps({"q": query, "num": k}).encode(), method="POST",
            headers={"X-API-KEY": key, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
        hits = body.get("organic", []) if isinstance(body, dict) else []
        passages = [Passage(str(h.get("snippet", "")), str(h.get("title", ""))) for h in hits if isinstance(h, dict)]
        return [p.snippet(limit) for p in passages if p.text][:k]


class Search(misstep.Tool["Search.Options"]):
    """search[query]: the top passages of a local corpus by BM25 (or of a web search API with a key)."""

    name = "search"
    description = ("search[query], which searches a query and returns a short snippet containing the answer. Note "
                   "that sometimes the snippet does not contain the answer, and some alternative search might be "
                   "needed.")

    class Options(misstep.Options):
        corpus: Annotated[Path | None, misstep.InputPath()] = Field(default=None, description="JSON Lines file of passages")
        text: str = Field(default="text", description="field of a passage's text")
        title: str | None = Field(default="title", description="field of a passage's title (optional)")
        k: int = Field(default=3, ge=1, le=20, description="passages per observation")
        snippet_chars: int = Field(default=300, ge=20, description="characters of each passage shown")
        max_query_chars: int = Field(default=300, ge=1, description="longer queries are refused")
        cache: bool = Field(default=True, description="keep the index next to the corpus")
        web: WebSearch | None = Field(default=None, description="search the web instead (needs an API key)")

        @model_validator(mode="after")
        def _one_backend(self) -> Search.Options:
            if (self.corpus is None) == (self.web is None):
                raise ValueError("give exactly one of `corpus:` (a JSONL file of passages) or `web:` (a search API)")
            return self

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        opts = self.options
        self._index: Index | None = None
        self._key = ""
        if opts.web is not None:
            self._key = os.environ.get(opts.web.api_key_env, "")
            if not self._key:
                raise misstep.ComponentError(
                    f"web search needs an API key in the environment variable {opts.web.api_key_env}; set it, or "
                    "search a local corpus with `corpus:`")
        else:
            assert opts.corpus is not None
            self._index = load_index(opts.corpus, opts.text, opts.title, cache=opts.cache)

    def run(self, argument: str) -> str:
        opts = self.options
        query = argument.strip().strip(_QUOTES).strip()
        if not query:
            return "Error: empty query; write search[some words]"
        if len(query) > opts.max_query_chars:
            return f"Error: the query is longer than {opts.max_query_chars} characters"
        if self._index is None:
            assert opts.web is not None
            try:
                snippets = opts.web.search(query, self._key, opts.k, opts.snippet_chars)
            except (urllib.error.URLError, OSError, ValueError) as error:
                return f"Error: the web search failed ({getattr(error, 'reason', error)})"
        else:
            words = tokenize(query)
            if not words:
                return "Error: the query has no words"
            snippets = [p.snippet(opts.snippet_chars) for p in self._index.search(words, opts.k)]
        return format_hits(snippets) if snippets else f"No results for {query!r}."
