"""Length rewards.

`length_penalty` (Kimi k1.5, https://arxiv.org/abs/2501.12599, sec. 2.3.3; HARMO's R_length):
within a group of G samples with lengths L_i,

    lambda_i = 0.5 - (L_i - L_min) / (L_max - L_min)      (0 for all when L_max == L_min)
    r_i      = lambda_i             if sample i is correct
               min(0, lambda_i)     otherwise

so among correct answers the shorter earn up to +0.5 and the longer down to -0.5, and a wrong
answer is never rewarded for being short. Generalised: correctness is read from any term
listed before (`correct_term`, raw value >= `threshold`; None = every sample counts as
correct, a plain relative length penalty); `only_if_group_correct` (HARMO) gives 0 to a whole
group with no correct sample; lengths in tokens or words.

`overlong_penalty` (DAPO, https://arxiv.org/abs/2503.14476, eq. 13): a soft penalty on
completions close to the generation limit.

`video_r1_length` (Video-R1's length control, tulerfeng/Video-R1 @ 59d65c3,
src/r1-v/src/open_r1/trainer/grpo_trainer.py, `len_control`): where more than one sample of the
group is correct, each correct one of 320 to 512 tokens earns +0.2.
"""

from __future__ import annotations

from mmalign.rewards.registry import Sample, reward
from mmalign.rewards.rule import final_answer


def _length(s: Sample, unit: str) -> int:
    if unit == "tokens":
        return s.num_tokens
    if unit == "words":
        return len(final_answer(s.completion).split())
    raise ValueError(f"unit must be 'tokens' or 'words', got {unit!r}")


@reward("length_penalty", scope="group", refers=("correct_term",))
def length_penalty(samples: list[Sample], correct_term: str | None = "answer_match", threshold: float = 1.0,
                   only_if_group_correct: bool = True, unit: str = "tokens") -> list[float]:
    """Kimi k1.5's group-relative length reward (module docstring)."""
    lengths = [_length(s, unit) for s in samples]
    correct = [correct_term is None or s.scores[correct_term] >= threshold for s in samples]
    if only_if_group_correct and not any(correct):
        return [0.0] * len(samples)
    lo, hi = min(lengths), max(lengths)
    lam = [0.0 if hi == lo else 0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [v if ok else min(0.0, v) for v, ok in zip(lam, correct)]


@reward("overlong_penalty")
def overlong_penalty(sample: Sample, max_tokens: int, buffer: int) -> float:
    """DAPO: 0 up to max_tokens - buffer tokens, then falling linearly to -1 at max_tokens,
    -1 beyond. Set max_tokens to grpo.max_new_tokens to penalise truncated completions fully."""
    n, start = sample.num_tokens, max_tokens - buffer
    if n > max_tokens:
        return -1.0
    return 0.0 if n <= start else (start - n) / buffer


@reward("video_r1_length", scope="group", refers=("correct_term",))
def video_r1_length(samples: list[Sample], correct_term: str = "video_r1_accuracy", threshold: float = 0.1,
                    min_tokens: int = 320, max_tokens: int = 512, bonus: float = 0.2) -> list[float]:
    """Video-R1's length control (module docstring): correct = `correct_term`'s raw value above
    `threshold` (theirs: the accuracy reward > 0.1); lengths in tokens, end of turn included."""
    correct = [s.scores[correct_term] > threshold for s in samples]
    if sum(correct) <= 1:
        return [0.0] * len(samples)
    return [bonus if ok and min_tokens <= s.num_tokens <= max_tokens else 0.0 for s, ok in zip(samples, correct)]
