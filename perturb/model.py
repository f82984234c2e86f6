"""The model behind a pairs run: answers on videos (mmalign.models.generate), text-only
completions of a partial answer (APASI's self-injection, language-prior edits), and yes/no
probabilities (OSPO's self-check). Every call is cut into left-padded batches of
`generation.batch_size` prompts."""

from __future__ import annotations

import torch

from mmalign.models.backbone import chat_messages, load_backbone
from mmalign.models.generate import Prompt, encode_prompts, generate

from .config import PairsConfig
from .pair import Backend


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class ModelBackend:
    def __init__(self, cfg: PairsConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.model, self.processor = load_backbone(cfg.model)
        self.model.to(device).eval()
        self.tokenizer = self.processor.tokenizer

    def backend(self) -> Backend:
        return Backend(generate=self.generate, complete=self.complete, yes_prob=self.yes_prob)

    def generate(self, prompts: list[tuple]) -> list[str]:
        g = self.cfg.generation
        out = []
        for chunk in _chunks(prompts, g.batch_size):
            texts = generate(self.model, self.processor, [Prompt(text, video) for text, video in chunk],
                             max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, temperature=g.temperature,
                             top_p=g.top_p, repetition_penalty=g.repetition_penalty, system=g.system)
            out += [t[0].strip() for t in texts]
        return out

    @torch.no_grad()
    def complete(self, items: list[tuple[str, str]], max_new_tokens: int = 64,
                 repetition_penalty: float = 1.1) -> list[str]:
        """Greedy continuation of each (prompt, answer so far), the prompt WITHOUT the video,
        cut at the first "." (APASI's unimodal_generate)."""
        out = []
        for chunk in _chunks(items, self.cfg.generation.batch_size):
            texts = [self.processor.apply_chat_template(chat_messages(q, None, 0, self.cfg.generation.system),
                                                        add_generation_prompt=True, tokenize=False) + prefix
                     for q, prefix in chunk]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                                    add_special_tokens=False).to(self.model.device)
            ids = self.model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      repetition_penalty=repetition_penalty, pad_token_id=self.tokenizer.pad_token_id)
            new = self.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [t.split(".", 1)[0].strip() for t in new]
        return out

    @torch.no_grad()
    def yes_prob(self, asks: list[tuple]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) of the first answer token, "yes"/"Yes" against "no"/"No"."""
        yes = self._first_ids(("yes", "Yes"))
        no = self._first_ids(("no", "No"))
        out = []
        for chunk in _chunks(asks, self.cfg.generation.batch_size):
            inputs = encode_prompts(self.processor, [Prompt(q, v) for q, v in chunk], self.cfg.generation.system)
            inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
            probs = self.model(**inputs).logits[:, -1].float().softmax(-1)
            p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
            out += (p_yes / (p_yes + p_no).clamp_min(1e-12)).tolist()
        return out

    def _first_ids(self, words) -> list[int]:
        return sorted({self.tokenizer.encode(w, add_special_tokens=False)[0] for w in words})
