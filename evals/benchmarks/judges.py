"""Local models that some official scorers call: a chat LM judge (TempCompass's gpt-3.5 judge,
EventHallusion's GPT-4o description judge) and a sentence embedder (VidHalluc's SimCSE).

Each is loaded once per process from a local folder (`score.judge_model`,
`score.embedding_model`); nothing is downloaded. The judge decodes greedily, so a rescored
run gives the same numbers.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=2)
def _chat_model(path: str):
    from mmalign.perturb.text_model import TextModel

    return TextModel(path, max_new_tokens=128)


def chat_judge(path: str, prompt: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return _chat_model(path).chat([messages])[0]


@lru_cache(maxsize=2)
def _embedder(path: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def cls_embedding(path: str, sentence: str) -> torch.Tensor:
    """SimCSE's sentence vector: the first token of the last hidden state (eval_sth.py)."""
    tokenizer, model = _embedder(path)
    inputs = tokenizer(sentence, return_tensors="pt", truncation=True)
    return model(**inputs).last_hidden_state[0, 0].double()


def cosine(path: str, a: str, b: str) -> float:
    return float(torch.nn.functional.cosine_similarity(cls_embedding(path, a), cls_embedding(path, b), dim=0))
