from dbooth.eval.pick import pick_best

BASE = {"dino": 0.3, "clip_t": 0.30, "pres": 0.40}


def m(dino, clip_t, pres=0.4):
    return {"dino": dino, "clip_t": clip_t, "pres": pres}


def test_the_most_faithful_checkpoint_that_still_follows_prompts_wins():
    candidates = {"step-100": m(0.5, 0.30), "step-200": m(0.7, 0.29), "step-300": m(0.8, 0.25)}
    pick = pick_best(candidates, BASE, prompt_margin=0.02, pres_margin=0.1, prior=False)
    assert pick.best == "step-200"  # step-300 looks more like the subject but ignores its prompts
    assert pick.eligible == ["step-100", "step-200"]
    assert pick_best(candidates, BASE, prompt_margin=0.1, pres_margin=0.1, prior=False).best == "step-300"


def test_with_the_prior_on_pres_must_stay_under_its_bound():
    candidates = {"step-100": m(0.5, 0.30, 0.45), "step-200": m(0.7, 0.30, 0.6)}
    assert pick_best(candidates, BASE, prompt_margin=0.02, pres_margin=0.1, prior=True).best == "step-100"
    assert pick_best(candidates, BASE, prompt_margin=0.02, pres_margin=0.1, prior=False).best == "step-200"
    assert "pres" in pick_best(candidates, BASE, prompt_margin=0.02, pres_margin=0.1, prior=True).rule


def test_ties_go_to_the_earlier_step_and_no_candidate_means_none():
    tie = {"step-100": m(0.6, 0.30), "step-200": m(0.6, 0.30)}
    assert pick_best(tie, BASE, prompt_margin=0.0, pres_margin=0.0, prior=False).best == "step-100"
    bad = {"step-100": m(0.9, 0.1)}
    pick = pick_best(bad, BASE, prompt_margin=0.02, pres_margin=0.1, prior=False)
    assert pick.best is None and pick.eligible == []
