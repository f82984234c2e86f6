"""mmalign's DPO equals TRL's DPOTrainer (loss_type="sigmoid") on the same tiny Qwen2.5-VL and
image pair: the loss and every parameter's gradient."""

import copy

import pytest
import torch
from PIL import Image

from mmalign.config import LossConfig, ModelConfig
from mmalign.data.collate import Sequence, collate_sequences, encode_response
from mmalign.models.backbone import encode_prompt, family_of, load_backbone
from mmalign.methods import compute_loss
from mmalign.train.scoring import TokenScorer

trl = pytest.importorskip("trl")

PAIRS = [
    ("Describe the image.", "A red square.", "A blue circle moves left."),
    ("What color is it?", "It is green and small.", "Red."),
]


def images():
    return [Image.new("RGB", (56, 56), c) for c in ("red", "green")]


def mmalign_loss_and_grads(model, ref, processor, beta):
    eot = family_of(model).end_of_turn
    seqs = []
    for which in (1, 2):
        for (prompt, *responses), image in zip(PAIRS, images()):
            p = encode_prompt(processor, prompt, images=[image])
            seqs.append(Sequence(p, encode_response(processor.tokenizer, responses[which - 1], eot).ids))
    batch = collate_sequences(seqs, processor.tokenizer.pad_token_id)
    policy = TokenScorer(model)(batch)
    with torch.no_grad():
        reference = TokenScorer(ref)(batch)
    out = compute_loss("dpo", LossConfig(beta=beta), batch, 2, policy, reference)
    model.zero_grad()
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trl_loss_and_grads(model, ref, processor, beta, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    eot = family_of(model).end_of_turn
    rows = []
    for (prompt, chosen, rejected), image in zip(PAIRS, images()):
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True, tokenize=False)
        rows.append({"images": [image], "prompt": text, "chosen": chosen + eot, "rejected": rejected + eot})
    args = DPOConfig(output_dir=str(tmp_path), beta=beta, loss_type=["sigmoid"], per_device_train_batch_size=2,
                     max_length=None, report_to=[], use_cpu=True, remove_unused_columns=False,
                     dataloader_drop_last=False, bf16=False, fp16=False)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=processor)
    batch = next(iter(trainer.get_train_dataloader()))
    model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dpo_matches_trl(tmp_path):
    model, processor = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=str(tmp_path / "tiny")))
    model.train()
    with torch.no_grad():  # move the policy away from the reference so the loss is not log 2
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ref = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=str(tmp_path / "tiny")))[0].eval()
    ours, our_grads = mmalign_loss_and_grads(model, ref, processor, beta=0.1)
    theirs, their_grads = trl_loss_and_grads(model, copy.deepcopy(ref), processor, beta=0.1, tmp_path=tmp_path)
    assert abs(float(ours) - float(torch.log(torch.tensor(2.0)))) > 1e-4  # a non-trivial loss
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
    assert set(our_grads) == set(their_grads)
    for name, g in our_grads.items():
        torch.testing.assert_close(g, their_grads[name], atol=1e-5, rtol=1e-4, msg=name)
