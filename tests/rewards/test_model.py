"""The reward-model term against a tiny sequence-classification checkpoint scored directly."""

import pytest
import torch

from mmalign.rewards import RewardSet, Sample
from mmalign.rewards.model import load_reward_model


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForSequenceClassification

    from mmalign.models.tiny import train_tokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    tok = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(["<pad>", "<eos>"], vocab_size=300),
                                  pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tok.pad_token_id)
    model = Qwen2ForSequenceClassification(config)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # scores of order 1 that differ between texts
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def direct_score(path, text):
    """The checkpoint's logit on one unpadded text: the last token's score."""
    model, tok = load_reward_model(path)
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return float(model(input_ids=ids).logits[0, 0])


def test_scores_equal_a_direct_unpadded_forward(reward_model_dir):
    group = [Sample("Is there a red circle?", "yes"), Sample("Is there a red circle?", "no, there is a blue square"),
             Sample("What moves?", "The green triangle moves left and then disappears.")]
    rs = RewardSet.from_config([{"name": "reward_model", "path": reward_model_dir, "batch_size": 2}])
    got = rs(group, group_size=3).terms["reward_model"]
    want = [direct_score(reward_model_dir, f"{s.prompt}\n{s.completion}") for s in group]  # the default template
    assert got == pytest.approx(want, abs=1e-5)
    assert len({round(x, 4) for x in got}) == 3  # the texts get different scores: the test can tell them apart

    squashed = RewardSet.from_config([{"name": "reward_model", "path": reward_model_dir, "sigmoid": True,
                                       "template": "Q: {prompt} A: {completion}"}])(group, 3).terms["reward_model"]
    want = [torch.sigmoid(torch.tensor(direct_score(reward_model_dir, f"Q: {s.prompt} A: {s.completion}"))).item()
            for s in group]
    assert squashed == pytest.approx(want, abs=1e-5)


def test_hybrid_scores_open_ended_samples_with_the_reward_model(reward_model_dir):
    group = [Sample("Is there a red circle?", "yes", answer="yes"), Sample("Describe the video.", "A red circle.")]
    rs = RewardSet.from_config([{"name": "hybrid", "open": "reward_model", "open_options": {"path": reward_model_dir}}])
    got = rs(group, group_size=2).terms["hybrid"]
    assert got == pytest.approx([1.0, direct_score(reward_model_dir, "Describe the video.\nA red circle.")], abs=1e-5)
