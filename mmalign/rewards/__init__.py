"""Rewards for GRPO: small named functions composed by the config as weighted terms.

    grpo:
      rewards:
        - {name: answer_match, weight: 1.0}
        - {name: length_penalty, weight: 0.5, correct_term: answer_match}
        - {name: my_rewards.py:brevity, weight: 0.2, max_words: 5}   # your own function

Built-in terms by room: `rule` (answer_match, choice_match, valid_choice, format,
temporal_iou, object_precision, object_recall, reference_f1, video_r1_accuracy), `model` (reward_model),
`aspects` (instruction_adherence), `length` (length_penalty, overlong_penalty, video_r1_length), `hybrid`
(HARMO's rule-or-model term). `registry` holds the decorator and the sample type, `compose`
the weighted sum with its start-up checks and per-sample fallbacks.
"""

from mmalign.rewards import aspects, hybrid, length, model, rule  # noqa: F401  (registers the built-in terms)
from mmalign.rewards.compose import RewardConfigError, Rewards, RewardSet, Term
from mmalign.rewards.registry import REGISTRY, Sample, UnknownReward, known_rewards, lookup, reward

__all__ = ["reward", "Sample", "RewardSet", "Rewards", "Term", "RewardConfigError", "UnknownReward",
           "known_rewards", "lookup", "REGISTRY"]
