"""Procedural faces for the CASIA-style training set, the verification sets and RFW.

Identity factors (fixed per identity): face shape (width, height, jaw), eye spacing, height and
size, iris colour, brow weight, nose length/width, mouth width/position, lip colour, skin tone
from one of the four groups (RFW_GROUPS order), hair colour and style (short, long, fringe,
bald), moustache, and a base age.
Nuisance factors (per image): expression (mouth curve and opening, eye opening), yaw (the face
narrows, features shift sideways, the far eye shrinks and then hides, the nose sticks out),
in-plane roll, scale and position, lighting (a directional gradient, brightness, colour
temperature), age cues (forehead and eye wrinkles, greying hair) around the identity's base age,
background, blur and sensor noise.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rgsyn.data.toy import finish, item_rng, jitter_colour
from rgsyn.paths import RFW_GROUPS

SS = 2
SKIN = {"African": (96, 62, 44), "Asian": (226, 192, 152), "Caucasian": (236, 206, 188),
        "Indian": (168, 118, 84)}
HAIR = {"African": [(20, 16, 14), (34, 26, 20)],
        "Asian": [(18, 16, 16), (40, 30, 24)],
        "Caucasian": [(30, 24, 20), (96, 64, 36), (196, 160, 96), (150, 70, 36)],
        "Indian": [(20, 18, 16), (50, 36, 26)]}
IRIS = [(50, 30, 20), (80, 50, 30), (60, 100, 150), (70, 110, 70)]
HAIR_STYLES = ("short", "long", "fringe", "bald")


@functools.lru_cache(maxsize=8192)
def identity(seed: int, set_name: str, index: int, group: str) -> dict:
    """Face identity `index` of `set_name`; the skin tone comes from `group`."""
    rng = item_rng(seed, "face", set_name, index)
    hair = HAIR[group]
    light_eyes = group == "Caucasian" and rng.random() < 0.5
    return {
        "group": group,
        "skin": jitter_colour(rng, SKIN[group], 12),
        "face_w": float(rng.uniform(0.52, 0.70)), "face_h": float(rng.uniform(0.66, 0.80)),
        "jaw": float(rng.uniform(0.0, 1.0)),            # 0 = oval chin, 1 = square jaw
        "eye_dx": float(rng.uniform(0.12, 0.21)), "eye_y": float(rng.uniform(0.40, 0.48)),
        "eye_r": float(rng.uniform(0.025, 0.045)),
        "iris": IRIS[2 + int(rng.integers(2))] if light_eyes else IRIS[int(rng.integers(2))],
        "brow": float(rng.uniform(0.01, 0.03)),
        "nose_len": float(rng.uniform(0.08, 0.16)), "nose_w": float(rng.uniform(0.03, 0.07)),
        "mouth_w": float(rng.uniform(0.09, 0.19)), "mouth_y": float(rng.uniform(0.66, 0.74)),
        "lips": jitter_colour(rng, (170, 80, 80), 20),
        "hair": jitter_colour(rng, hair[int(rng.integers(len(hair)))], 8),
        "hair_style": HAIR_STYLES[rng.choice(4, p=[0.4, 0.3, 0.2, 0.1])],
        "hair_h": float(rng.uniform(0.06, 0.14)),
        "moustache": bool(rng.random() < 0.15),
        "age": float(rng.uniform(0.0, 0.7)),
    }


def nuisance(rng: np.random.Generator, yaw=(-0.35, 0.35), age=None, base_age=0.3) -> dict:
    """Per-image nuisance draw. `yaw`: a range; `age`: a fixed age (age-gap sets) or None for the
    identity's base age plus a little."""
    return {
        "yaw": float(rng.uniform(*yaw)),
        "roll": float(rng.uniform(-8, 8)),
        "scale": float(rng.uniform(0.92, 1.05)),
        "dx": float(rng.uniform(-0.04, 0.04)), "dy": float(rng.uniform(-0.04, 0.04)),
        "smile": float(rng.uniform(-1, 1)), "open": float(max(0.0, rng.uniform(-0.6, 1.0))),
        "eyes_open": float(rng.uniform(0.4, 1.0)),
        "light_dir": float(rng.uniform(0, 2 * np.pi)), "light": float(rng.uniform(0.0, 0.45)),
        "bright": float(rng.uniform(0.8, 1.15)), "warm": float(rng.uniform(-0.08, 0.08)),
        "age": float(np.clip(base_age + rng.uniform(-0.1, 0.1) if age is None else age, 0, 1)),
        "bg": tuple(int(v) for v in rng.integers(30, 226, 3)),
        "blur": float(rng.uniform(0.0, 1.0)),
    }


def _draw_face(img: Image.Image, f: dict, n: dict) -> None:
    s = img.size[0]
    draw = ImageDraw.Draw(img)
    yaw = n["yaw"]
    cx = s * (0.5 + n["dx"]) + yaw * 0.06 * s
    cy = s * (0.52 + n["dy"])
    fw = f["face_w"] * s * n["scale"] * (1 - 0.22 * abs(yaw))
    fh = f["face_h"] * s * n["scale"]
    grey = n["age"] ** 2 * 0.9
    hair = tuple(int(h * (1 - grey) + 200 * grey) for h in f["hair"])
    # hair behind the head (long)
    if f["hair_style"] == "long":
        draw.rectangle([cx - fw * 0.58, cy - fh * 0.3, cx + fw * 0.58, cy + fh * 0.55], fill=hair)
    # neck, head shape: an ellipse, plus a square jaw blended in
    draw.rectangle([cx - fw * 0.22, cy + fh * 0.3, cx + fw * 0.22, s], fill=f["skin"])
    box = [cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2]
    draw.ellipse(box, fill=f["skin"])
    if f["jaw"] > 0.5:
        j = (f["jaw"] - 0.5) * 2
        draw.rounded_rectangle([cx - fw * (0.4 + 0.08 * j), cy, cx + fw * (0.4 + 0.08 * j), cy + fh / 2],
                               radius=fw * 0.2, fill=f["skin"])
    # hair on top
    top = cy - fh / 2
    if f["hair_style"] != "bald":
        hh = f["hair_h"] * s * (1.6 if f["hair_style"] == "fringe" else 1.0)
        draw.chord([cx - fw * 0.52, top - hh * 0.6, cx + fw * 0.52, top + hh * 2.2], 180, 360, fill=hair)
        if f["hair_style"] == "fringe":
            draw.rectangle([cx - fw * 0.45, top + hh * 0.4, cx + fw * 0.45, top + hh * 1.0], fill=hair)
    # features move with yaw; the far side is foreshortened
    shift = yaw * 0.16 * s

    def fx(u):  # horizontal position of a feature at offset u (fraction of s) from the midline
        side = np.sign(u) if u else 0
        fore = 1 - 0.6 * max(0.0, side * yaw) if side else 1
        return cx + shift + u * s * n["scale"] * fore * (1 - 0.2 * abs(yaw))

    ey = top + (f["eye_y"] - 0.5 + f["face_h"] / 2) * s * n["scale"] * 0.98
    er = f["eye_r"] * s * n["scale"]
    for side in (-1, 1):
        vis = 1 - 0.8 * max(0.0, side * yaw)
        if vis < 0.45:
            continue   # the far eye is hidden in profile
        ex = fx(side * f["eye_dx"])
        rw, rh = er * vis, er * n["eyes_open"]
        draw.ellipse([ex - rw, ey - rh, ex + rw, ey + rh], fill=(245, 245, 240))
        draw.ellipse([ex - rw * 0.55, ey - rh * 0.8, ex + rw * 0.55, ey + rh * 0.8], fill=f["iris"])
        bw = f["brow"] * s
        draw.rectangle([ex - rw * 1.2, ey - er * 1.9 - bw, ex + rw * 1.2, ey - er * 1.9], fill=hair)
        if n["age"] > 0.55:   # crow's feet
            k = ex + side * rw * 1.4
            for d in (-1, 0, 1):
                draw.line([k, ey + d * er * 0.5, k + side * er, ey + d * er * 0.9],
                          fill=tuple(int(c * 0.7) for c in f["skin"]), width=1)
    if n["age"] > 0.35:       # forehead lines
        for i in range(1 + int(n["age"] * 3)):
            y = top + fh * (0.18 + 0.05 * i)
            draw.line([cx - fw * 0.25 + shift * 0.5, y, cx + fw * 0.25 + shift * 0.5, y],
                      fill=tuple(int(c * 0.72) for c in f["skin"]), width=1)
    # nose: a wedge pointing sideways in profile
    nx, ny = fx(0.0), ey + er
    nl = f["nose_len"] * s * n["scale"]
    nw = f["nose_w"] * s * n["scale"]
    dark = tuple(int(c * 0.78) for c in f["skin"])
    draw.polygon([(nx, ny), (nx + yaw * nw * 2.5 - nw * 0.5, ny + nl), (nx + yaw * nw * 2.5 + nw * 0.5, ny + nl)],
                 fill=dark)
    # mouth: curve from the expression
    my = top + f["mouth_y"] * fh
    mw = f["mouth_w"] * s * n["scale"] * (1 - 0.35 * abs(yaw))
    mx = fx(0.0)
    curve = n["smile"] * s * 0.04
    opening = n["open"] * s * 0.035
    pts_top = [(mx - mw, my - curve), (mx, my), (mx + mw, my - curve)]
    if opening > 1:
        draw.polygon(pts_top + [(mx, my + opening)], fill=(90, 30, 30))
    draw.line(pts_top, fill=f["lips"], width=max(1, int(s * 0.025)))
    if f["moustache"]:
        draw.rectangle([mx - mw * 0.8, my - s * 0.05, mx + mw * 0.8, my - s * 0.025], fill=hair)


def render(ident: dict, nuis: dict, size: int, rng: np.random.Generator) -> Image.Image:
    s = size * SS
    img = Image.new("RGB", (s, s), nuis["bg"])
    _draw_face(img, ident, nuis)
    img = img.rotate(nuis["roll"], resample=Image.BILINEAR, fillcolor=nuis["bg"])
    img = img.filter(ImageFilter.GaussianBlur(nuis["blur"] * SS))
    img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    grad = 1 + nuis["light"] * (np.cos(nuis["light_dir"]) * xx + np.sin(nuis["light_dir"]) * yy) * 2
    arr = arr * grad[..., None] * nuis["bright"]
    arr = arr * np.array([1 + nuis["warm"], 1.0, 1 - nuis["warm"]])
    return finish(arr, rng, noise=2.5)


def groups_for(n_ids: int, shares) -> list[str]:
    """Per-identity groups for `n_ids` identities split by `shares` (largest remainder), in
    RFW_GROUPS order, identities of one group consecutive."""
    shares = np.asarray(shares, dtype=float)
    shares = shares / shares.sum()
    raw = shares * n_ids
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n_ids - counts.sum()]:
        counts[i] += 1
    return [g for g, c in zip(RFW_GROUPS, counts) for _ in range(c)]
