"""What each figure on a run page means, in one line each: the loss curve's, DreamBench's (``dbooth eval``
with DINO and CLIP) and the built-in world's oracle's. The demo's page uses the same lines."""

from __future__ import annotations

# loss.csv's columns
TRAINING = {
    "loss": ("loss", "what training minimises: the error of the model's noise (or velocity) prediction on your "
                     "photos plus prior weight x the same on the class images. Lower means it reproduces its "
                     "training images better, not that it learned the subject; it jumps from step to step "
                     "because each step draws a random noise level, hence the smoothed line."),
    "prior_loss": ("prior loss", "the same error on the generated class images alone (prior preservation); "
                                 "a rising prior loss means the model is forgetting what an ordinary member of "
                                 "the class looks like."),
    "lr": ("learning rate", "the optimizer's step size at each step, from train.learning_rate and "
                            "train.lr_scheduler (right-hand axis)."),
}

# eval.json's figures with DINO and CLIP as judges (dbooth.eval.metrics)
ENCODERS = {
    "dino": ("DINO", "subject fidelity: mean cosine similarity of DINO ViT embeddings of the samples to your "
                     "photos (higher looks more like your subject)."),
    "clip_i": ("CLIP-I", "subject fidelity by CLIP image embeddings, samples against your photos (higher is "
                         "closer)."),
    "clip_t": ("CLIP-T", "prompt fidelity: cosine of each sample's CLIP image embedding with its prompt's text "
                         "embedding (higher follows the prompt better; about 0.3 is typical)."),
    "pres": ("PRES", "prior drift: DINO similarity of plain class-prompt samples to your photos; high means "
                     "every member of the class now looks like your subject (lower is better)."),
    "div_dino": ("DIV", "diversity: mean pairwise 1 - cosine of DINO embeddings among one prompt's samples "
                        "(higher is more varied; the paper uses LPIPS)."),
}

# eval.json's figures when the base model's own exact judge scores them (the built-in world's oracle)
ORACLE = {
    "subject_fidelity": ("subject fidelity", "share of the samples the oracle recognises as your subject (0 to "
                                             "1, higher is better)."),
    "prompt_fidelity": ("prompt fidelity", "share of the samples that show the scene their prompt names (0 to "
                                           "1, higher is better)."),
    "pres": ("PRES", "share of the plain class-prompt samples the oracle recognises as your subject (lower is "
                     "better). It counts collapse onto the subject only: class samples that are black or the "
                     "wrong shape are not your subject either, so they still score 0."),
    "div": ("DIV", "diversity: mean perceptual distance between samples of one prompt, on the oracle's own "
                   "features (0 means identical samples, higher is more varied)."),
}


def meaning(key: str, judge: str = "encoders") -> tuple[str, str] | None:
    """``(name, one line)`` for a figure; ``judge``: ``oracle`` or ``encoders`` (whose PRES and DIV differ)."""
    if key in TRAINING:
        return TRAINING[key]
    first, second = (ORACLE, ENCODERS) if judge == "oracle" else (ENCODERS, ORACLE)
    return first.get(key) or second.get(key)


def glossary_items(keys: list[str], judge: str = "encoders") -> list[tuple[str, str]]:
    """The lines for ``keys`` in order, each figure once; keys with no line are left out."""
    seen, out = set(), []
    for key in keys:
        found = meaning(key, judge)
        if found and found[0] not in seen:
            seen.add(found[0])
            out.append(found)
    return out
