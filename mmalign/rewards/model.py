"""Model-based reward: the scalar score of a sequence-classification reward model.

The checkpoint is any `AutoModelForSequenceClassification` folder or hub id (e.g. a
Skywork / InternLM reward model); it is loaded once per process and kept (frozen, eval mode)
for the whole run. The scored text is the prompt and the completion rendered by `template`,
or by the reward model's own chat template with `chat_template: true`.
"""

from __future__ import annotations

import functools

from mmalign.rewards.registry import Sample, reward


@functools.lru_cache(maxsize=4)
def load_reward_model(path: str, dtype: str = "auto"):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def render(sample: Sample, tokenizer, template: str, chat_template: bool) -> str:
    if chat_template:
        messages = [{"role": "user", "content": sample.prompt}, {"role": "assistant", "content": sample.completion}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return template.format(prompt=sample.prompt, completion=sample.completion)


@reward("reward_model", scope="group")
def reward_model(samples: list[Sample], path: str, template: str = "{prompt}\n{completion}",
                 chat_template: bool = False, label: int = 0, sigmoid: bool = False, max_length: int = 2048,
                 batch_size: int = 16, dtype: str = "auto") -> list[float]:
    """logits[:, label] of the reward model on each rendered (prompt, completion); with
    `sigmoid`, squashed into (0, 1). Texts longer than `max_length` tokens are truncated."""
    import torch

    model, tokenizer = load_reward_model(path, dtype)
    texts = [render(s, tokenizer, template, chat_template) for s in samples]
    scores = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(model.device)
            logits = model(**enc).logits[:, label].float()
            scores += (torch.sigmoid(logits) if sigmoid else logits).tolist()
    return scores


def reward_model_paths(entries: list[dict], where: str = "grpo.rewards") -> list[tuple[str, str]]:
    """(config key, checkpoint) of each reward model the terms `entries` load: `reward_model`
    terms and hybrid's `open: reward_model`. Checked before a run claims its folder; unchecked,
    a missing one failed on every completion, each got the fallback reward, and the run trained
    on nothing from it."""
    found = []
    for i, entry in enumerate(entries):
        if entry.get("name") == "reward_model":
            found.append((f"{where}[{i}].path", entry["path"]))
        elif entry.get("name") == "hybrid" and entry.get("open") == "reward_model":
            found.append((f"{where}[{i}].open_options.path", (entry.get("open_options") or {})["path"]))
    return found
