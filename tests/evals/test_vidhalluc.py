"""VidHalluc: each task's official rule (eval/evaluation/eval_<task>.py) on hand-computed
examples, the prompts of the inference scripts, the official prediction files, and STH's
score against the formula written out here (float64), with a real (tiny, random) encoder."""

import json
import math

import pytest

from mmalign.cli import main
from mmalign.config import ConfigError
from mmalign.evals.benchmarks import vidhalluc as vh

from eval_helpers import make_cfg, score

BQA = {"0": [{"q": "Is the man running?", "a": {"vidA_0_5": "Yes", "vidA_5_9": "No"}}],
       "1": [{"q": "Is a dog barking?", "a": {"vidB_0_3": "No", "vidB_3_8": "No"}}]}
MCQ = {"0": {"vidA_0_5": {"Question": "What is the man doing?", "Choices": {"A": "running", "B": "sitting",
                                                                             "C": "jumping", "D": "eating"},
                          "Correct Answer": "A"},
             "vidA_5_9": {"Question": "What is the man doing?", "Choices": {"A": "running", "B": "sitting",
                                                                             "C": "jumping", "D": "eating"},
                          "Correct Answer": "B, C"}}}
TSH = {"0": {"video": "vidC_0_9", "Question": "Action A: cut onions. Action B: boil water. ", "Correct Answer": "AB"},
       "1": {"video": "vidD_0_9", "Question": "Action A: x. Action B: y. ", "Correct Answer": "B"}}
STH = {"s1": {"Scene change": "Yes", "Locations": "from a kitchen to a garden."},
       "s2": {"Scene change": "No", "Locations": "None"},
       "s3": {"Scene change": "Yes", "Locations": "from a street to a shop."}}


def write_root(root):
    root.mkdir()
    for name, data in (("ach_binaryqa.json", BQA), ("ach_mcq.json", MCQ), ("tsh.json", TSH), ("sth.json", STH)):
        (root / name).write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("pred,parsed", [(" yes.", "YES"), ("No, it is not", "NO"), ("Yes it is", "YES IT IS")])
def test_bqa_answer(pred, parsed):
    assert vh.bqa_answer(pred) == parsed


@pytest.mark.parametrize("pred,letters", [
    ("B, C", {"B", "C"}), ("A", {"A"}), ("BC", set()),            # "BC" has no stand-alone letter ...
    ("the man is running", {"A"}),                                 # ... then the first choice text found
    ("a", set()), ("(D)", {"D"}),
])
def test_mcq_letters(pred, letters):
    assert vh.mcq_letters(pred, MCQ["0"]["vidA_0_5"]["Choices"]) == letters


@pytest.mark.parametrize("pred,order", [
    ("AB", "AB"), ("ba", "BA"), ("B", "B"), ("The order is not clear", "None"),
    ("action a happens before action b", "AB"),
    ("action b, then action a", "BA"),
    ("action a after action b", "BA"),
    ("first action b and action a", "BA"),        # no cue word: order of appearance
    ("only action a", "A"), ("nothing", "None"), ("AB.", "None"),
])
def test_tsh_answer(pred, order):
    assert vh.tsh_answer(pred) == order


@pytest.mark.parametrize("text,parsed", [
    ("Scene change: Yes, Locations: from a kitchen to a garden.", ("Yes", "from a kitchen to a garden.")),
    ("Scene change: No, Locations: None", ("No", "None")),
    ("Scene change: No", ("No", "")), ("yes", ("yes", "")),
])
def test_sth_parse(text, parsed):
    assert vh.sth_parse(text) == parsed


def test_prompts_as_the_inference_scripts_build_them(tmp_path):
    items = {it.id: it for it in vh.load(make_cfg("vidhalluc", write_root(tmp_path / "vh"))).items}
    assert items["bqa/0/0/vidA_0_5"].prompt == "Is the man running? Only answer with a single word 'Yes' or 'No'."
    assert items["bqa/0/0/vidA_0_5"].media.endswith("videos/vidA_0_5.mp4")
    assert items["mcq/0/vidA_0_5"].prompt == (
        "What is the man doing? Please select the correct answer (one or more options), only return your answer(s). "
        "(e.g., ABCD)\nChoices:\nA. running\nB. sitting\nC. jumping\nD. eating\n")
    assert items["tsh/0"].prompt.startswith("Action A: cut onions. Action B: boil water. Sort these two actions")
    assert items["tsh/0"].media.endswith("videos/vidC_0_9.mp4")
    assert items["sth/s1"].prompt == vh.STH_PROMPT


def test_scores_by_the_official_rules(tmp_path, monkeypatch):
    sims = {("a kitchen", "a kitchen"): 1.0, ("the yard", "a garden"): 0.75}
    monkeypatch.setattr(vh, "cosine", lambda path, a, b: sims[(a, b)])
    cfg = make_cfg("vidhalluc", write_root(tmp_path / "vh"), score={"embedding_model": "/simcse"})
    loaded = vh.load(cfg)
    answers = {"bqa/0/0/vidA_0_5": "Yes.", "bqa/0/0/vidA_5_9": "No", "bqa/1/0/vidB_0_3": "No",
               "bqa/1/0/vidB_3_8": "Yes",                                     # question 1: one clip wrong
               "mcq/0/vidA_0_5": "A", "mcq/0/vidA_5_9": "B",                   # second: needs {B, C}
               "tsh/0": "Action A before action B", "tsh/1": "AB",
               "sth/s1": "Scene change: Yes, Locations: from a kitchen to the yard.",
               "sth/s2": "Scene change: Yes, Locations: from x to y.",          # false positive
               "sth/s3": "Scene change: No, Locations: None"}                   # false negative
    out = score(cfg, loaded.items, [answers[it.id] for it in loaded.items])
    cats = out["categories"]
    assert cats["bqa"] == {"accuracy": 0.5, "n": 2}
    assert cats["mcq"]["accuracy"] == 0.5 and cats["tsh"]["accuracy"] == 0.5
    # STH by hand: tp=1, fp=1, fn=1, tn=0
    m = (1 * 0 - 1 * 1) / math.sqrt(2 * 2 * 1 * 1)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    scene = lambda s: 0.0 if s <= 0.5 else (sig(s) - sig(0.5)) / (sig(1) - sig(0.5))  # noqa: E731
    desc = (scene(1.0) + scene(0.75)) / 2
    sth = cats["sth"]
    assert sth["mcc"] == pytest.approx(m) and sth["classification_score"] == pytest.approx(((m + 1) / 2) ** 2)
    assert sth["description_score"] == pytest.approx(desc)
    assert out["metrics"]["sth"] == pytest.approx(0.6 * ((m + 1) / 2) ** 2 + 0.4 * desc)


def test_sth_without_an_embedder_is_said_and_official_refuses(tmp_path):
    root = write_root(tmp_path / "vh")
    loaded = vh.load(make_cfg("vidhalluc", root))
    assert any("embedding_model" in n for n in loaded.notes)
    out = score(make_cfg("vidhalluc", root), [it for it in loaded.items if it.id.startswith("sth")],
                ["Scene change: Yes, Locations: from a to b."] * 3)
    assert "description_score" not in out["categories"]["sth"] and "mcc" in out["categories"]["sth"]
    with pytest.raises(ConfigError, match="embedding_model"):
        vh.load(make_cfg("vidhalluc", root, official=True))


def test_official_prediction_files_through_the_cli(tmp_path):
    root = write_root(tmp_path / "vh")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"benchmark: vidhalluc\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, splits: [bqa]}}\n"
                   "model: {path: /no/such/model}\n")
    preds = {"0": [{"q": "Is the man running?", "a": {"vidA_0_5": "Yes", "vidA_5_9": "No"}}],
             "1": [{"q": "Is a dog barking?", "a": {"vidB_0_3": "No", "vidB_3_8": "No"}}]}
    path = tmp_path / "LLaVA-Video_Hallu_bqa.json"
    path.write_text(json.dumps(preds))
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert m["metrics"]["bqa"] == 1.0 and m["counts"]["scored"] == 4
    assert vh.read_predictions({"s1": "Scene change: No"}, "x.json") == {"sth/s1": "Scene change: No"}
    mcq = {"0": {"c": {"Question": "q", "Choices": {}, "Correct Answer": "A", "Model Answer": "B"}}}
    assert vh.read_predictions(mcq, "x.json") == {"mcq/0/c": "B"}
    assert vh.read_predictions({"0": {**TSH["0"], "Model Answer": "BA"}}, "x.json") == {"tsh/0": "BA"}


def test_cosine_is_the_cls_vector_of_a_local_encoder(tmp_path):
    """judges.cosine: first-token embeddings of a real encoder loaded from a folder."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from mmalign.evals.benchmarks import judges
    from mmalign.models.tiny import train_tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(["<pad>"], 256), pad_token="<pad>")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64)).eval()
    tok.save_pretrained(tmp_path / "enc")
    model.save_pretrained(tmp_path / "enc")
    with torch.no_grad():
        def cls(s):
            return model(**tok(s, return_tensors="pt")).last_hidden_state[0, 0].double()
        a, b = cls("a red circle"), cls("a blue square")
    expected = float(a @ b / (a.norm() * b.norm()))
    assert judges.cosine(str(tmp_path / "enc"), "a red circle", "a blue square") == pytest.approx(expected, abs=1e-6)
    assert judges.cosine(str(tmp_path / "enc"), "a red circle", "a red circle") == pytest.approx(1.0)
