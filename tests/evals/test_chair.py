"""CHAIR on hand-made COCO-style annotations: ground truth from instances and reference
captions, two-word names and the toilet-seat rule, CHAIR_i / CHAIR_s by hand, and an
official run refusing to start without the official text backend."""

import importlib.util
import json

import pytest
from eval_helpers import make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.chair import Chair, load, simple_backend, simple_singularize
from mmalign.config import ConfigError

SYNONYMS = """person, man, woman, people, child, baby
dog, puppy
cat, kitten
chair, seat
toilet
hot dog
bird
traffic light
"""


def coco_folder(root):
    (root / "annotations").mkdir(parents=True)
    (root / "synonyms.txt").write_text(SYNONYMS)
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in (3, 1, 2)]
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "toilet"}]
    annotations = [{"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 2},
                   {"image_id": 2, "category_id": 3}, {"image_id": 99, "category_id": 1}]
    captions = [{"image_id": 1, "caption": "A man walks a puppy."},
                {"image_id": 2, "caption": "A kitten sits on the toilet."},
                {"image_id": 3, "caption": "A baby bird on a branch."}]
    (root / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": images, "categories": categories, "annotations": annotations}))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": captions}))
    return root


def test_ground_truth_merges_instances_and_reference_captions(tmp_path):
    items = load(make_cfg("chair", coco_folder(tmp_path))).items
    assert [it.id for it in items] == ["1", "2", "3"]  # id order
    # "baby bird" is a bird, not a person: the double-word rule runs before the synonym lookup.
    assert [it.target for it in items] == [["dog", "person"], ["cat", "toilet"], ["bird"]]
    assert items[0].prompt == "Please describe this image in detail."
    assert items[0].media == str(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg")


def test_chair_i_and_chair_s_by_hand(tmp_path):
    cfg = make_cfg("chair", coco_folder(tmp_path))
    items = load(cfg).items
    answers = [
        "Two men walk their dogs past a cat and a traffic light.",  # person dog | cat, traffic light
        "A toilet seat next to a kitten.",                          # toilet cat (the seat is the toilet's)
        "A baby bird and a hot dog.",                               # bird | hot dog
    ]
    out = score(cfg, items, answers)
    rows = out["items"]
    assert rows[0]["parsed"] == ["person", "dog", "cat", "traffic light"]
    assert rows[0]["hallucinated"] == [["cat", "cat"], ["traffic light", "traffic light"]]
    assert rows[1]["parsed"] == ["toilet", "cat"] and rows[1]["correct"]
    assert rows[2]["hallucinated"] == [["hot dog", "hot dog"]]
    assert out["metrics"]["chair_s"] == pytest.approx(2 / 3)
    assert out["metrics"]["chair_i"] == pytest.approx(3 / 8)


def test_seat_next_to_a_toilet_is_not_a_chair():
    chair = Chair(SYNONYMS.splitlines(), simple_backend())
    assert chair.node_words("A seat by the toilet.") == ["toilet"]
    assert chair.node_words("A seat by the window.") == ["chair"]
    assert chair.node_words("Two PUPPIES and a Man") == ["dog", "person"]


def test_empty_caption_is_listed_and_counted_as_the_official_script_does(tmp_path):
    cfg = make_cfg("chair", coco_folder(tmp_path))
    out = score(cfg, load(cfg).items, ["", "A dog.", "A bird."])
    assert [u["id"] for u in out["unparsable"]] == ["1"]
    assert out["metrics"]["chair_s"] == pytest.approx(1 / 3)  # only "A dog." on image 2 hallucinates
    assert out["metrics"]["chair_i"] == pytest.approx(1 / 2)


def test_sampling_is_seeded(tmp_path):
    root = coco_folder(tmp_path)
    pick = [[it.id for it in load(make_cfg("chair", root, data={"options": {"sample": 2, "seed": s}})).items]
            for s in (0, 0, 1)]
    assert pick[0] == pick[1] and len(pick[0]) == 2


def test_simple_singularize():
    words = ["dogs", "buses", "ponies", "glass", "men", "bus", "skis", "boxes", "tennis"]
    singular = ["dog", "bus", "pony", "glass", "man", "bus", "ski", "box", "tennis"]
    assert [simple_singularize(w) for w in words] == singular


def test_official_run_refuses_without_the_official_backend(tmp_path):
    with pytest.raises(ConfigError, match="score.backend=official"):
        make_cfg("chair", tmp_path, official=True)
    if importlib.util.find_spec("nltk") and importlib.util.find_spec("pattern"):
        pytest.skip("NLTK and pattern are installed here")
    cfg = make_cfg("chair", coco_folder(tmp_path), official=True, score={"backend": "official"})
    with pytest.raises(BenchmarkFilesMissing, match="pip install nltk pattern"):
        load(cfg)


def test_missing_files_are_named(tmp_path):
    (tmp_path / "synonyms.txt").write_text(SYNONYMS)
    with pytest.raises(BenchmarkFilesMissing, match="instances_val2014.json.*captions_val2014.json"):
        load(make_cfg("chair", tmp_path))


def test_chair_s_own_caption_files_are_read_by_predictions(tmp_path, capsys):
    """The two caption files CHAIR scripts read: chair.py's coco-caption output
    ({overall, imgToEval: {id: {image_id, caption}}}) and the {image_id, caption} lines of
    OPERA's chair.py and its forks. Each was refused ("lacks 'id'") or read as ids that no image
    has. Hand count: image 1's caption names a cat it lacks; 2 and 3 are faithful -> CHAIR_s 1/3,
    CHAIR_i 1 of 5 mentions (person dog cat | toilet | bird)."""
    from mmalign.cli import main

    root = coco_folder(tmp_path / "coco")
    captions = {1: "A man and his dog see a cat.", 2: "A toilet.", 3: "A baby bird."}
    cfg = tmp_path / "chair.yaml"
    cfg.write_text(f"benchmark: chair\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}}}\n"
                   "score: {backend: simple}\n")
    lines = tmp_path / "captions.jsonl"
    lines.write_text("".join(json.dumps({"image_id": i, "caption": c}) + "\n" for i, c in captions.items()))
    evaluated = tmp_path / "cap_file.json"
    evaluated.write_text(json.dumps({"overall": {"CIDEr": 0.5}, "imgToEval": {
        str(i): {"image_id": i, "caption": c, "CIDEr": 0.5} for i, c in captions.items()}}))
    for n, path in enumerate((lines, evaluated)):
        assert main(["eval", "--config", str(cfg), "--predictions", str(path), f"output_dir={tmp_path / f'o{n}'}"]) == 0
        (m,) = json.loads((tmp_path / f"o{n}" / "results.json").read_text())["models"]
        assert m["counts"]["scored"] == 3
        assert (m["metrics"]["chair_s"], m["metrics"]["chair_i"]) == (pytest.approx(1 / 3), pytest.approx(1 / 5))
    lines.write_text(lines.read_text() + '{"image_id": 4}\n')
    assert main(["eval", "--config", str(cfg), "--predictions", str(lines), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (f'mmalign: error: {lines}:4: not a caption like {{"image_id": ..., '
                                               f'"caption": "..."}}, as {lines}:1 is')
