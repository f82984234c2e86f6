"""A local Hugging Face causal LM as RRPO's judge and rewriter for open answers on real videos.

RRPO has a strong LLM do both (docs/DATA.md): judge whether an open answer agrees with the
ground truth, and rewrite the ground truth minimally with the answer's wrong concepts, in two
turns (first list the key differences: objects, actions, attributes; then rewrite the truth
with them). We run any chat model `AutoModelForCausalLM` loads from a local folder, greedy
and seeded, so a resumed pairs run writes the same records. Nothing is downloaded.
"""

from __future__ import annotations

import torch

JUDGE_PROMPT = ("Question: {question}\nGround-truth answer: {truth}\nModel answer: {answer}\n"
                "Does the model answer agree with the ground-truth answer in every object, action and attribute? "
                "Answer yes or no.")
DIFF_PROMPT = ("Ground truth: {truth}\nAnswer: {answer}\n"
               "List the key differences between the answer and the ground truth: objects, actions and "
               "attributes the answer gets wrong, one per line.")
REWRITE_PROMPT = ("Rewrite the ground truth with as few changes as possible so that it carries exactly these wrong "
                  "concepts and nothing else. Reply with the rewritten text only.")


def need_text_model(path: str | None) -> None:
    """The one-line error for open answers that no local chat model can judge or rewrite."""
    if not path:
        from mmalign.config import ConfigError

        raise ConfigError("rrpo_qa: open answers without truth files need rrpo_qa.judge_model / "
                          "rrpo_qa.rewriter_model (a local chat model folder)")


class TextModel:
    def __init__(self, path: str | None, max_new_tokens: int = 128, seed: int = 0, trust_remote_code: bool = False):
        need_text_model(path)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mmalign.models.backbone import from_hub

        with from_hub(path, "text model"):
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code).eval()
        self.max_new_tokens, self.seed = max_new_tokens, seed

    @torch.no_grad()
    def chat(self, conversations: list[list[dict]]) -> list[str]:
        """Greedy replies to each conversation ([{role, content}, ...])."""
        torch.manual_seed(self.seed)
        out = []
        for messages in conversations:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
            gen = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            out.append(self.tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return out

    def agrees(self, items: list[tuple[str, str, str]]) -> list[bool]:
        replies = self.chat([[{"role": "user", "content": JUDGE_PROMPT.format(question=q, truth=t, answer=a)}]
                             for q, t, a in items])
        return [r.lower().lstrip(" *\"'").startswith("yes") for r in replies]

    def rewrite(self, items: list[tuple[str, str]]) -> list[str]:
        """RRPO's two turns: the differences, then the truth rewritten with them."""
        first = [[{"role": "user", "content": DIFF_PROMPT.format(truth=t, answer=a)}] for t, a in items]
        diffs = self.chat(first)
        second = [m + [{"role": "assistant", "content": d}, {"role": "user", "content": REWRITE_PROMPT}]
                  for m, d in zip(first, diffs)]
        return self.chat(second)
