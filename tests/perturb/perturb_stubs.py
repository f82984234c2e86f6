"""Stub model services that stand in for the model (deterministic, instant) where a test is
about the generators or the runner."""

import re

import numpy as np


def stub_generate(prompts):
    """A "model" that sees: for a video it reports the mean level of each frame in order (so a
    reversed or shortened video gives a reversed or shorter answer); for a text-only prompt
    listing clip captions it joins them (a faithful summariser)."""
    out = []
    for text, video in prompts:
        if video is None:
            captions = re.findall(r"^\d+\. (.*)$", text, re.M)
            out.append(" ".join(captions) if captions else "Nothing to say.")
        else:
            levels = ", ".join(f"level {int(f.mean())}" for f in video.frames)
            out.append(f"The video shows {levels}.")
    return out


def stub_complete(items, **kwargs):
    return ["moving to the left" for _ in items]


def stub_yes_prob(asks):
    # P(yes) from how bright the clip is: masking an object darkens it.
    return [float(np.clip(v.frames.mean() / 40.0, 0, 1)) for _, v in asks]
