import json
from pathlib import Path

from dbooth.workspace.config import Manifest, apply_overrides
from dbooth.eval.prompt_sets import dreambench_kind, dreambench_lists, eval_prompts

SHARED_LIST = Path(__file__).resolve().parents[3] / "shared" / "dreambench" / "prompts_and_classes.txt"


def test_shipped_lists_hold_25_prompts_each_with_both_placeholders():
    lists = dreambench_lists()
    assert sorted(lists) == ["live_subjects", "objects"]
    for prompts in lists.values():
        assert len(prompts) == 25 and len(set(prompts)) == 25
        assert all("{identifier} {class}" in p for p in prompts)
    assert "a {identifier} {class} wearing a red hat" in lists["live_subjects"]
    assert "a {identifier} {class} wearing a red hat" not in lists["objects"]
    if SHARED_LIST.is_file():  # the shipped copy says what the dataset says
        text = SHARED_LIST.read_text()
        for p in lists["objects"] + lists["live_subjects"]:
            assert p.replace("{identifier}", "{0}").replace("{class}", "{1}") in text


def test_animals_get_the_live_subject_list():
    assert dreambench_kind("dog") == "live_subjects"
    assert dreambench_kind("tabby cats") == "live_subjects"
    assert dreambench_kind("stuffed animal") == "objects"  # the plushies are objects in DreamBench
    assert dreambench_kind("backpack") == "objects"
    assert dreambench_kind("teapot") == "objects"


def test_eval_prompts_fill_the_placeholders_and_honour_the_limit():
    m = apply_overrides(Manifest(class_noun="dog"), {"identifier": "zwx", "eval.num_prompts": 3})
    label, prompts = eval_prompts(m)
    assert label == "dreambench:live_subjects"
    assert prompts == ["a zwx dog in the jungle", "a zwx dog in the snow", "a zwx dog on the beach"]
    label, prompts = eval_prompts(m, "validation")
    assert (label, prompts) == ("validation", ["a zwx dog on the beach"])
    assert json.dumps(prompts)  # plain strings for eval.json
