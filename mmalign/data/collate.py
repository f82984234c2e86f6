"""Responses -> token ids and per-token weights; sequences -> padded batch tensors.

Char spans (RRPO's differing phrases) and sentence labels (Mask-DPO) become per-token weights
through the tokenizer's offset mapping: a token belongs to a span when its character range
overlaps the span. Byte-level BPE can split one multi-byte character over several tokens;
each of them carries that character's offsets, so all of them are weighted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Span = tuple[int, int]


class AlignmentError(ValueError):
    """Sentence labels that do not line up with the tokenisation (Mask-DPO fails loudly)."""


@dataclass
class Response:
    ids: list[int]
    offsets: list[Span]  # char offsets into the response text; end-of-turn tokens lie past its end


def encode_response(tokenizer, text: str, end_of_turn: str) -> Response:
    """Tokenise `text` followed by the family's end-of-turn token, keeping char offsets.

    The response is tokenised on its own, as TRL does, so prompt and response never merge
    into one BPE token at the boundary.
    """
    enc = tokenizer(text + end_of_turn, add_special_tokens=False, return_offsets_mapping=True)
    return Response(list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])


def conversation_sequence(prompt: dict, tokenizer, text: str, spans: list[Span]) -> "Sequence":
    """A conversation's response text (`conversation_response`) after its first turn's prompt,
    scored on the tokens that overlap its answers' spans."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    trained = [any(_overlaps(tuple(o), s) for s in spans) for o in enc["offset_mapping"]]
    return Sequence(prompt, list(enc["input_ids"]), trained=trained)


def _overlaps(offset: Span, span: Span) -> bool:
    return offset[0] < span[1] and offset[1] > span[0]


def span_weights(response: Response, spans: list[Span]) -> list[float]:
    """1.0 for tokens overlapping any span, else 0.0."""
    return [float(any(_overlaps(o, s) for s in spans)) for o in response.offsets]


def sentence_keep_weights(response: Response, sentences: list[Span], labels: list[int], keep: int) -> list[float]:
    """Mask-DPO weights: tokens of sentences labelled `keep` count 1, of the others 0; tokens in
    no labelled sentence (end of turn, whitespace) count 1. A token overlapping two sentences
    of different verdicts cannot be assigned: AlignmentError rather than a silent guess."""
    weights = []
    for o in response.offsets:
        verdicts = {int(label == keep) for s, label in zip(sentences, labels) if _overlaps(o, s)}
        if len(verdicts) > 1:
            raise AlignmentError(f"token at chars {o} straddles sentences labelled differently")
        weights.append(float(verdicts.pop()) if verdicts else 1.0)
    return weights


@dataclass
class Sequence:
    """One prompt (processor outputs, batch of 1) followed by one scored response."""
    prompt: dict[str, torch.Tensor]
    response_ids: list[int]
    weights: dict[str, list[float]] = field(default_factory=dict)
    trained: list[bool] | None = None  # which response tokens are scored (a conversation's answers); None = all

    def __len__(self) -> int:
        return self.prompt["input_ids"].shape[1] + len(self.response_ids)


def collate_sequences(seqs: list[Sequence], pad_id: int, shared_prompt: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded batch. `labels` is -100 outside responses; each weight name becomes a
    [N, L] float tensor (0 outside responses); visual tensors concatenate along dim 0
    (`concat_visual`: Qwen's flattened patches and LLaVA's stacked pixels alike).

    shared_prompt: the model inputs instead hold each shared prompt once, followed by all of
    its responses (`mmalign.models.packing.pack_shared`, keys `packed.*`); `labels` and the
    weights keep the layout above."""
    from mmalign.models.backbone import TEXT_KEYS, concat_visual

    length = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    labels = torch.full((n, length), -100, dtype=torch.long)
    names = sorted({k for s in seqs for k in s.weights})
    weights = {k: torch.zeros((n, length)) for k in names}
    has_mm_types = "mm_token_type_ids" in seqs[0].prompt
    mm_types = torch.zeros((n, length), dtype=torch.long)
    for i, s in enumerate(seqs):
        p = s.prompt["input_ids"][0]
        r = torch.tensor(s.response_ids, dtype=torch.long)
        P, R = len(p), len(r)
        input_ids[i, :P + R] = torch.cat([p, r])
        attention_mask[i, :P + R] = 1
        labels[i, P:P + R] = r
        if s.trained is not None:  # a conversation's user turns and template text: context, not scored
            labels[i, P:P + R][~torch.tensor(s.trained, dtype=torch.bool)] = -100
        if has_mm_types:
            mm_types[i, :P] = s.prompt["mm_token_type_ids"][0]
        for k in names:
            w = s.weights.get(k)
            weights[k][i, P:P + R] = torch.tensor(w if w is not None else [1.0] * R)
    if shared_prompt:
        from mmalign.models.packing import pack_shared

        return {"labels": labels, **{f"weights.{k}": v for k, v in weights.items()}, **pack_shared(seqs, pad_id)}
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if has_mm_types:
        batch["mm_token_type_ids"] = mm_types
    for key in (k for k in seqs[0].prompt if k not in TEXT_KEYS):
        batch[key] = concat_visual([s.prompt[key] for s in seqs])
    batch.update({f"weights.{k}": v for k, v in weights.items()})
    return batch
