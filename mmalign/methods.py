"""Methods as data: one `Method` record per training method.

Every question "what does this method need" is answered here and nowhere else: which record
schema it reads, whether it needs a reference policy, the reference's full per-token
distribution (token-wise KL), a third sequence under a perturbed condition, which per-token
weights it builds from a record, its loss function, and the loss settings it reads with its
paper's defaults. Adding a method is one record below plus one loss function in
`mmalign.losses`.

A batch of n records with k sequences each is laid out as k blocks of n rows
([chosen..., rejected..., chosen-under-perturbed-condition...]); `split_rows` cuts a [k*n, T]
tensor back into those blocks. Every method is per-token log-probs plus per-token weights
handed to one function of `mmalign.losses`.

This module imports no torch at load time (the config layer reads it for `--help` and
validation); the loss adapters import `mmalign.losses` when they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

WEIGHTS_KEY = "weights.token"  # the batch key of a method's per-token weights (see `Method.weights`)

# What each loss setting means (the help of `loss.<key>`; the methods' defaults are in their records).
LOSS_KEYS = {
    "beta": "beta: the preference strength (DPO family, RRPO, Mask-DPO: the KL strength; SimPO: the reward "
            "scale; OSPO: beta_1 of its SimPO term)",
    "alpha": "alpha: RPO: weight of the chosen response's token NLL; RRPO: weight of the token-wise KL",
    "gamma": "gamma: the target margin (SimPO; OSPO: gamma_1 of its SimPO term, default 0.5 * beta)",
    "label_smoothing": "label_smoothing: conservative DPO (cDPO) label smoothing eps",
    "beta_copo": "beta_copo: OSPO: beta_2 of its conditional (CoPO) term",
    "gamma_copo": "gamma_copo: OSPO: gamma_2 of its conditional term (default 0.5 * beta_copo)",
    "ospo_weights": "ospo_weights: OSPO: weights of its SimPO, CoPO and SFT terms",
}


@dataclass(frozen=True)
class Blocks:
    """One micro-batch as the loss sees it: per block (chosen, rejected, ...) [n, T] tensors."""
    logps: tuple           # policy per-token log-probs
    ref: tuple             # reference per-token log-probs (Nones when reference-free)
    mask: tuple            # response masks
    weights: tuple         # per-token weights (Nones = all ones)
    kl: Any = None         # [n, T] per-token KL(ref || policy) of the chosen rows (token_kl methods)


@dataclass(frozen=True)
class Method:
    name: str
    paper: str
    records: str                  # the record schema read: "pair", "sft" or "grpo"
    loss: Callable | None         # (settings, Blocks) -> LossOutput; None: the method has its own recipe (grpo)
    defaults: dict = field(default_factory=dict)  # loss keys read -> default (a callable: derived from the others)
    reference: bool = True        # needs a reference policy
    token_kl: bool = False        # needs the reference's full distribution at every chosen token
    condition: bool = False       # scores the chosen response under `rejected_video` too (a third block)
    weights: Callable | None = None  # record -> (chosen, rejected) per-token weight builders, or None (all ones)
    note: str = ""                # what --help says instead of the needs above

    def settings(self, loss) -> dict:
        """The loss settings this method runs with: `loss` (a LossConfig or dict) where set,
        the method's defaults elsewhere; only the keys the method reads."""
        given = loss if isinstance(loss, dict) else vars(loss)
        out = {k: given.get(k) for k in self.defaults}
        for k, default in self.defaults.items():
            if out[k] is None and not callable(default):
                out[k] = default
        for k, default in self.defaults.items():
            if out[k] is None:
                out[k] = default(out)
        return out

    def describe(self) -> str:
        """One line for `--help`: the loss keys read, with defaults."""
        shown = {k: ("derived" if callable(v) else v) for k, v in self.defaults.items()}
        keys = ", ".join(f"{k}={v}" for k, v in shown.items()) or "no loss keys"
        needs = [w for w, on in (("a reference", self.reference), ("token KL", self.token_kl),
                                 ("rejected_video", self.condition)) if on]
        needs = self.note or (f"needs {', '.join(needs)}" if needs else "")
        return f"{self.name:<9} {keys}" + (f"  ({needs})" if needs else "")


def split_rows(x, k: int):
    return (None,) * k if x is None else x.chunk(k, dim=0)


# ---------------------------------------------------------------- per-token weights from records

def _span_weights(r):
    from mmalign.data.collate import span_weights

    if not r.chosen_spans or not r.rejected_spans:
        raise ValueError("needs chosen_spans and rejected_spans (the differing phrases)")
    return (lambda resp: span_weights(resp, r.chosen_spans)), (lambda resp: span_weights(resp, r.rejected_spans))


def _sentence_weights(r):
    """Mask-DPO: chosen keeps its factual sentences, rejected its hallucinated ones."""
    from mmalign.data.collate import sentence_keep_weights
    from mmalign.data.records import sentence_spans

    if r.chosen_sentence_labels is None or r.rejected_sentence_labels is None:
        raise ValueError("needs chosen_sentence_labels and rejected_sentence_labels")
    return (lambda resp: sentence_keep_weights(resp, sentence_spans(r.chosen), r.chosen_sentence_labels, keep=1),
            lambda resp: sentence_keep_weights(resp, sentence_spans(r.rejected), r.rejected_sentence_labels, keep=0))


# ---------------------------------------------------------------- loss adapters

def _sft(s, b):
    from mmalign.losses import sft_loss

    return sft_loss(b.logps[0], b.mask[0])


def _pair(b):
    return b.logps[0], b.logps[1], b.ref[0], b.ref[1]


def _dpo(s, b):
    from mmalign.losses import dpo_loss

    return dpo_loss(*_pair(b), b.mask[0], b.mask[1], beta=s["beta"], label_smoothing=s["label_smoothing"])


def _ipo(s, b):
    from mmalign.losses import ipo_loss

    return ipo_loss(*_pair(b), b.mask[0], b.mask[1], beta=s["beta"])


def _simpo(s, b):
    from mmalign.losses import simpo_loss

    return simpo_loss(b.logps[0], b.logps[1], b.mask[0], b.mask[1], beta=s["beta"], gamma=s["gamma"])


def _rpo(s, b):
    from mmalign.losses import rpo_loss

    return rpo_loss(*_pair(b), b.mask[0], b.mask[1], beta=s["beta"], alpha=s["alpha"],
                    label_smoothing=s["label_smoothing"])


def _rrpo(s, b):
    from mmalign.losses import rrpo_loss

    return rrpo_loss(*_pair(b), b.weights[0], b.weights[1], b.kl, b.mask[0], beta=s["beta"], alpha=s["alpha"])


def _mask_dpo(s, b):
    from mmalign.losses import mask_dpo_loss

    return mask_dpo_loss(*_pair(b), b.mask[0], b.mask[1], beta=s["beta"], chosen_weights=b.weights[0],
                         rejected_weights=b.weights[1])


def _ospo(s, b):
    from mmalign.losses import ospo_loss

    return ospo_loss(b.logps[0], b.logps[1], b.logps[2], b.mask[0], b.mask[1], b.mask[2], beta_simpo=s["beta"],
                     beta_copo=s["beta_copo"], gamma_simpo=s["gamma"], gamma_copo=s["gamma_copo"],
                     weights=tuple(s["ospo_weights"]))


# ---------------------------------------------------------------- the records

_RECORDS = [
    Method("sft", "token-level NLL of the response", "sft", _sft, reference=False),
    Method("dpo", "Rafailov et al. 2023", "pair", _dpo, {"beta": 0.1, "label_smoothing": 0.0}),
    Method("ipo", "Azar et al. 2023", "pair", _ipo, {"beta": 0.1}),
    # TRL's simpo_gamma: gamma is the margin itself (SimPO's own config writes gamma_beta_ratio).
    Method("simpo", "Meng et al. 2024", "pair", _simpo, {"beta": 2.0, "gamma": 0.5}, reference=False),
    # alpha 1.0: the NLL weight of RPO's paper and of ms-swift's DPO, which TEMPLE trains with.
    Method("rpo", "Pang et al. 2024", "pair", _rpo, {"beta": 0.1, "alpha": 1.0, "label_smoothing": 0.0}),
    # LLaVA-Video-7B settings of the official code (pritamqu/RRPO).
    Method("rrpo", "Sarkar & Etemad 2025", "pair", _rrpo, {"beta": 0.1, "alpha": 0.01}, token_kl=True,
           weights=_span_weights),
    Method("mask_dpo", "Gu et al. 2025", "pair", _mask_dpo, {"beta": 0.1}, weights=_sentence_weights),
    # KU-AGI/OSPO: b1 3, b2 5, gamma = gamma_beta_ratio 0.5 * beta, weights 0.8 / 0.5 / 1.5.
    Method("ospo", "OSPO 2025", "pair", _ospo,
           {"beta": 3.0, "gamma": lambda s: 0.5 * s["beta"], "beta_copo": 5.0,
            "gamma_copo": lambda s: 0.5 * s["beta_copo"], "ospo_weights": [0.8, 0.5, 1.5]},
           reference=False, condition=True),
    # GRPO reads the `grpo:` section; its reference is needed only when grpo.kl_beta != 0.
    Method("grpo", "Shao et al. 2024", "grpo", None,
           note="reads the grpo: section; a reference only when grpo.kl_beta > 0"),
]
METHODS: dict[str, Method] = {m.name: m for m in _RECORDS}


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


# ---------------------------------------------------------------- what the trainer calls

def blocks(name: str, batch: dict, k: int, policy: dict, ref: dict | None) -> Blocks:
    """`policy` / `ref`: outputs of TokenScorer ("logps" [k*n, T], "kl" for token_kl methods)."""
    mask = (batch["labels"][:, 1:] != -100).float()
    weights = batch[WEIGHTS_KEY][:, 1:] if method(name).weights and WEIGHTS_KEY in batch else None
    return Blocks(split_rows(policy["logps"], k), split_rows(ref["logps"] if ref else None, k), split_rows(mask, k),
                  split_rows(weights, k), policy.get("kl"))


def compute_loss(name: str, loss, batch: dict, k: int, policy: dict, ref: dict | None):
    """The method's loss on one micro-batch; `loss` is the LossConfig (unset keys take the
    method's defaults)."""
    m = method(name)
    if m.loss is None:
        raise ValueError(f"method {name!r} has no loss here (it runs its own recipe)")
    return m.loss(m.settings(loss), blocks(name, batch, k, policy, ref))


def preference_margins(name: str, batch: dict, k: int, logps):
    """[n] weighted log p(chosen) - log p(rejected) with the method's weights: the
    reference-free preference the summary reports before and after training."""
    b = blocks(name, batch, k, {"logps": logps}, None)

    def total(i):
        return (b.logps[i] * b.mask[i] * (b.weights[i] if b.weights[i] is not None else 1.0)).sum(-1)
    return total(0) - total(1)
