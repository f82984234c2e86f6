"""Fixtures for the loss tests (helpers in loss_inputs.py)."""

import pytest
import torch
from loss_inputs import response_mask, random_logps, token_weights


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def pair(gen):
    """A batch of preference pairs: policy/reference per-token log-probs, masks, weights."""
    cm, rm = response_mask(gen), response_mask(gen)
    return {
        "policy_chosen": random_logps(gen, cm), "policy_rejected": random_logps(gen, rm),
        "ref_chosen": random_logps(gen, cm), "ref_rejected": random_logps(gen, rm),
        "chosen_mask": cm, "rejected_mask": rm,
        "chosen_weights": token_weights(gen), "rejected_weights": token_weights(gen),
    }
