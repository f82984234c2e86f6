"""Multi-turn records: an SFT conversation trains every assistant answer (and nothing else), a
preference pair's earlier turns are its prompt's context, on every backbone family."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmalign.config import build_config, stages_of
from mmalign.data.encode import RecordDataset
from mmalign.data.records import read_records
from mmalign.io import iter_jsonl
from mmalign.models.backbone import encode_prompt, family_of, load_backbone
from mmalign.train.plan import record_lengths

FIRST, SECOND = ("What moves?", "A red circle."), ("Which way does it go?", "It moves left.")


def records_file(folder: Path, world: Path, rows: list[dict]) -> Path:
    shutil.copytree(world / "videos", folder / "videos", dirs_exist_ok=True)
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps({"video": "videos/vid0000.mp4", **r}) + "\n" for r in rows))
    return path


def dataset(path: Path, tiny: str, tiny_dir, method: str):
    raw = {"method": method, "model": {"tiny": tiny, "tiny_dir": tiny_dir}, "data": {"train_file": str(path)},
           "sampling": {"num_frames": 4}}
    (_, cfg), = stages_of(build_config(raw))
    model, processor = load_backbone(cfg.model)
    records, skipped = read_records(path, "pair" if method == "dpo" else "sft")
    assert skipped == []
    family = family_of(model)
    return RecordDataset(records, processor, family, method, cfg.data, cfg.sampling), record_lengths(
        records, processor, family, cfg), model, processor


def trained_runs(sequence) -> list[list[int]]:
    runs, run = [], []
    for token, trained in zip(sequence.response_ids, sequence.trained):
        if trained:
            run.append(token)
        elif run:
            runs, run = runs + [run], []
    return runs + [run] if run else runs


@pytest.mark.parametrize("tiny", ["qwen2_5_vl", "glm4v", "llava", "smolvlm", "internvl"])
def test_a_conversation_trains_each_answer_with_its_end_of_turn_and_nothing_else(tmp_path, world, tiny_dir, tiny):
    """The tokens scored are exactly each answer and its end of turn (the user turns and the
    template's text are context); the first answer is tokenised as the same answer alone; the
    plan counts what is encoded."""
    path = records_file(tmp_path, world, [
        {"id": "conversation", "history": [list(FIRST)], "prompt": SECOND[0], "response": SECOND[1]},
        {"id": "alone", "prompt": FIRST[0], "response": FIRST[1]}])
    data, lengths, model, processor = dataset(path, tiny, tiny_dir, "sft")
    conversation, alone = data[0].sequences[0], data[1].sequences[0]
    end = family_of(model).end_of_turn
    assert [processor.tokenizer.decode(run).strip() for run in trained_runs(conversation)] == [
        FIRST[1] + end, SECOND[1] + end]
    assert conversation.prompt["input_ids"].tolist() == alone.prompt["input_ids"].tolist()
    assert conversation.response_ids[:len(alone.response_ids)] == alone.response_ids
    assert [x.prompt + x.responses[0] for x in lengths] == [len(conversation), len(alone)]


def test_a_pair_s_earlier_turns_are_its_prompt(tmp_path, world, tiny_dir):
    path = records_file(tmp_path, world, [{"history": [list(FIRST)], "prompt": SECOND[0], "chosen": SECOND[1],
                                           "rejected": "It moves right."}])
    data, lengths, _, processor = dataset(path, "qwen2_5_vl", tiny_dir, "dpo")
    chosen, rejected = data[0].sequences
    video = data.media.video(data.records[0].video)
    expected = encode_prompt(processor, SECOND[0], video=video, history=[FIRST])["input_ids"]
    assert chosen.prompt["input_ids"].tolist() == rejected.prompt["input_ids"].tolist() == expected.tolist()
    assert chosen.trained is None and lengths[0].prompt == expected.shape[1]


def test_sft_on_a_conversation_is_the_nll_of_the_template_s_assistant_tokens(tmp_path, world, tiny_dir):
    """`mmalign train` on a LLaVA-Video-178K-style multi-turn JSON file (it was refused, "one
    turn"), its videos under data.media_dir: the first step's loss is the float64 mean NLL, under the model as loaded, of the
    assistant tokens of the chat template's own rendering of the whole conversation (found by
    their headers), with shared prompts on and off."""
    from mmalign.cli import main
    from mmalign.data.video import MediaLoader
    from mmalign.models.backbone import video_metadata

    shutil.copytree(world / "videos", tmp_path / "videos")
    conversations = [{"from": "human", "value": "<image>\n" + FIRST[0]}, {"from": "gpt", "value": FIRST[1]},
                     {"from": "human", "value": SECOND[0]}, {"from": "gpt", "value": SECOND[1]}]
    annotations = tmp_path / "annotations" / "0_30_s_academic_oe.json"  # apart from the videos, as released
    annotations.parent.mkdir()
    annotations.write_text(json.dumps([{"id": "v0", "video": "vid0000.mp4", "conversations": conversations}], indent=2))
    losses = []
    for shared in ("true", "false"):
        out = tmp_path / f"run-{shared}"
        assert main(["train", str(Path(__file__).parents[2] / "configs" / "quickstart.yaml"), f"output_dir={out}",
                     f"model.tiny_dir={tiny_dir}", "world.enabled=false", "stages=[]", "method=sft",
                     f"data.train_file={annotations}", f"data.media_dir={tmp_path / 'videos'}",
                     "train.max_steps=1", "train.batch_size=1",
                     f"train.shared_prompt={shared}", "sampling.num_frames=4"]) == 0
        losses += [row["loss"] for _, row in iter_jsonl(out / "metrics.jsonl")]

    (_, cfg), = stages_of(build_config({"method": "sft", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
                                        "sampling": {"num_frames": 4}}))
    model, processor = load_backbone(cfg.model)
    video = MediaLoader(cfg.sampling).video(str(tmp_path / "videos" / "vid0000.mp4"))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": FIRST[0]}]},
                {"role": "assistant", "content": [{"type": "text", "text": FIRST[1]}]},
                {"role": "user", "content": [{"type": "text", "text": SECOND[0]}]},
                {"role": "assistant", "content": [{"type": "text", "text": SECOND[1]}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    inputs = processor(text=[text], videos=[np.asarray(video.frames)], do_sample_frames=False,
                       video_metadata=[video_metadata(video)], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    header = processor.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    scored = []
    for start in (i + len(header) for i in range(len(ids)) if ids[i:i + len(header)] == header):
        stop = ids.index(end, start)
        scored += list(range(start, stop + 1))  # the answer and its end of turn
    with torch.no_grad():
        logits = model(**inputs).logits[0].double()
    logps = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    expected = -logps[[i - 1 for i in scored]].mean().item()
    assert len(scored) > len(processor.tokenizer(FIRST[1] + SECOND[1])["input_ids"])
    assert losses == pytest.approx([expected, expected], rel=1e-4)
