"""Procedural persons for the Market-1501-style and CUHK03-NP-style worlds.

Identity factors (fixed per pid): upper and lower clothing colours (from a small shared palette,
so distinct people often share colours, plus a small per-person tint), upper pattern (solid,
stripes, checks), a chest logo seen only from the front, sleeve length, lower garment (trousers,
shorts, skirt), build (width, height), skin, hair, shoes, accessories (hat; bag: none, shoulder
bag on one side, backpack).
Nuisance factors (per image): the camera (its colour cast, its background and its distribution of
viewpoints front / back / side), pose (leg spread, lean) and scale/position jitter, background
clutter, occlusion by a foreground object, blur, brightness and sensor noise.

The two worlds look different: Market is outdoors with 6 cameras and bright clothes; CUHK03 is
indoors (wall + floor) with 2 cameras of opposite viewpoint and strong tints, muted clothes and
larger figures. CUHK03 `detected` boxes are the `labeled` scene cropped with a jittered box.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rgsyn.data.toy import finish, item_rng, jitter_colour

SS = 2          # supersampling factor: draw at 2x, downsample (anti-aliasing for free)
MARGIN = 1.3    # the scene is drawn larger than the box so that a jittered crop stays in the scene

UPPER = {"white": (235, 235, 232), "black": (32, 32, 36), "grey": (128, 128, 128),
         "red": (196, 34, 44), "blue": (44, 74, 190), "navy": (30, 40, 92), "green": (44, 140, 64),
         "yellow": (228, 198, 44), "pink": (228, 140, 172), "orange": (232, 120, 34),
         "purple": (118, 52, 148), "brown": (118, 80, 44)}
LOWER = {"black": (30, 30, 34), "navy": (34, 42, 84), "denim": (70, 98, 150), "grey": (110, 110, 112),
         "beige": (206, 186, 146), "white": (228, 228, 224), "brown": (104, 74, 44),
         "olive": (92, 100, 52)}
SKIN = [(236, 200, 170), (214, 170, 130), (176, 124, 88), (120, 80, 54), (90, 60, 42)]
HAIR = [(24, 20, 18), (70, 46, 30), (140, 100, 60), (210, 180, 110), (150, 150, 150)]
PATTERNS = ("solid", "stripes", "checks")
VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Style:
    name: str
    desaturate: float        # 0 = palette as is, 1 = grey
    darken: float
    scale: tuple[float, float]
    indoor: bool
    p_occlude: float
    blur: tuple[float, float]


STYLES = {
    "market": Style("market", 0.0, 1.0, (0.78, 0.94), False, 0.2, (0.0, 1.6)),
    "cuhk03": Style("cuhk03", 0.45, 0.8, (0.88, 0.98), True, 0.12, (0.3, 1.2)),
}


def _muted(colour, style: Style):
    c = np.asarray(colour, float)
    c = c + (c.mean() - c) * style.desaturate
    return tuple(c * style.darken)


@functools.lru_cache(maxsize=4096)
def identity(seed: int, world: str, pid: int) -> dict:
    """The fixed look of person `pid` in `world`."""
    rng = item_rng(seed, world, "identity", pid)
    style = STYLES[world]
    up_name = list(UPPER)[rng.integers(len(UPPER))]
    lo_name = list(LOWER)[rng.integers(len(LOWER))]
    second = list(UPPER)[rng.integers(len(UPPER))]
    return {
        "upper_name": up_name, "lower_name": lo_name,
        "upper": jitter_colour(rng, _muted(UPPER[up_name], style), 10),
        "lower": jitter_colour(rng, _muted(LOWER[lo_name], style), 10),
        "second": jitter_colour(rng, _muted(UPPER[second], style), 10),
        "pattern": PATTERNS[rng.choice(3, p=[0.5, 0.3, 0.2])],
        "stripe_period": int(rng.integers(3, 6)),
        "logo": bool(rng.random() < 0.35),
        "long_sleeves": bool(rng.random() < 0.5),
        "lower_type": ("trousers", "shorts", "skirt")[rng.choice(3, p=[0.6, 0.25, 0.15])],
        "build": float(rng.uniform(0.8, 1.2)),
        "height": float(rng.uniform(0.9, 1.05)),
        "skin": jitter_colour(rng, SKIN[rng.integers(len(SKIN))], 8),
        "hair": jitter_colour(rng, HAIR[rng.integers(len(HAIR))], 8),
        "long_hair": bool(rng.random() < 0.3),
        "shoes": jitter_colour(rng, UPPER[["black", "white", "brown", "grey"][rng.integers(4)]], 10),
        "hat": jitter_colour(rng, UPPER[list(UPPER)[rng.integers(len(UPPER))]], 10)
        if rng.random() < 0.2 else None,
        "bag": ("none", "shoulder", "backpack")[rng.choice(3, p=[0.5, 0.25, 0.25])],
        "bag_side": int(rng.choice([-1, 1])),
        "bag_colour": jitter_colour(rng, _muted(UPPER[list(UPPER)[rng.integers(len(UPPER))]], style), 10),
    }


@functools.lru_cache(maxsize=64)
def camera(seed: int, world: str, cam: int) -> dict:
    """Camera `cam` (0-based): colour cast, background and viewpoint preferences."""
    rng = item_rng(seed, world, "camera", cam)
    style = STYLES[world]
    if style.indoor:
        # two cameras of opposite viewpoint and strong, opposite tints (CUHK03 look)
        tint = [(0.9, 0.97, 1.12), (1.1, 1.03, 0.9)][cam % 2]
        views = [(0.65, 0.2, 0.15), (0.2, 0.65, 0.15)][cam % 2]
        wall = jitter_colour(rng, [(190, 180, 160), (150, 160, 170)][cam % 2], 10)
        ground = jitter_colour(rng, (110, 100, 90), 10)
    else:
        tint = tuple(rng.uniform(0.8, 1.2, 3))
        views = tuple(rng.dirichlet([2.0, 2.0, 1.2]))
        wall = jitter_colour(rng, [(150, 170, 190), (120, 140, 110), (170, 110, 90)][rng.integers(3)], 15)
        ground = jitter_colour(rng, [(120, 120, 115), (90, 120, 70), (150, 130, 110)][rng.integers(3)], 15)
    return {"gain": np.asarray(tint, float), "offset": float(rng.uniform(-15, 15)),
            "views": np.asarray(views) / np.sum(views), "wall": wall, "ground": ground,
            "horizon": float(rng.uniform(0.45, 0.7)), "clutter": int(rng.integers(2, 7))}


def _background(draw: ImageDraw.ImageDraw, cam: dict, rng: np.random.Generator, w: int, h: int):
    hz = int(h * (cam["horizon"] + rng.uniform(-0.05, 0.05)))
    draw.rectangle([0, 0, w, hz], fill=jitter_colour(rng, cam["wall"], 6))
    draw.rectangle([0, hz, w, h], fill=jitter_colour(rng, cam["ground"], 6))
    for _ in range(cam["clutter"] + int(rng.integers(0, 3))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(2, w * 0.5), y0 + rng.uniform(2, h * 0.4)
        colour = jitter_colour(rng, cam["wall"] if y0 < hz else cam["ground"], 40)
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 4)))


def _garment(draw, box, ident, view, rng):
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=jitter_colour(rng, ident["upper"], 4))
    period = ident["stripe_period"] * SS
    if ident["pattern"] == "stripes":
        for y in np.arange(y0, y1, 2 * period):
            draw.rectangle([x0, y, x1, min(y + period - 1, y1)], fill=ident["second"])
    elif ident["pattern"] == "checks":
        for i, y in enumerate(np.arange(y0, y1, period)):
            for j, x in enumerate(np.arange(x0, x1, period)):
                if (i + j) % 2:
                    draw.rectangle([x, y, min(x + period - 1, x1), min(y + period - 1, y1)],
                                   fill=ident["second"])
    if ident["logo"] and view == "front":
        s = (x1 - x0) * 0.22
        cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * 0.35
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=ident["second"])


def _person(draw, ident, view, rng, ox, oy, bw_, bh_, style: Style):
    """Draw one person inside the box (ox, oy, bw_ x bh_) of the canvas."""
    fh = bh_ * rng.uniform(*style.scale) * ident["height"]
    fh = min(fh, bh_ * 0.98)
    top = oy + (bh_ - fh) / 2 + rng.uniform(-0.04, 0.04) * bh_
    cx = ox + bw_ / 2 + rng.uniform(-0.08, 0.08) * bw_
    bw = bw_ * 0.42 * ident["build"] * (0.7 if view == "side" else 1.0)
    r = 0.075 * fh
    lean = rng.uniform(-0.04, 0.04) * bw_
    t0, t1, foot = top + 2 * r + 0.01 * fh, top + 0.52 * fh, top + 0.97 * fh
    side = ident["bag_side"] * (-1 if view == "back" else 1)
    # backpack behind the body (seen from the back it covers the torso, from the front the straps)
    if ident["bag"] == "backpack" and view == "side":
        draw.rectangle([cx - side * bw * 0.5 - bw * 0.35, t0 + 0.02 * fh, cx - side * bw * 0.5,
                        t0 + 0.3 * fh], fill=ident["bag_colour"])
    # legs
    spread = rng.uniform(0.0, 0.25) * bw
    leg_w = bw * 0.38
    lower = jitter_colour(rng, ident["lower"], 4)
    for s in (-1, 1):
        lx = cx + s * (bw * 0.22) + s * spread / 2
        leg = [lx - leg_w / 2, t1, lx + leg_w / 2, foot]
        knee = t1 + (foot - t1) * (0.45 if ident["lower_type"] == "shorts" else 1.0)
        draw.rectangle(leg, fill=ident["skin"])
        draw.rectangle([leg[0], t1, leg[2], knee], fill=lower)
        draw.rectangle([leg[0] - 1, foot - 0.03 * fh, leg[2] + 1, foot], fill=ident["shoes"])
    if ident["lower_type"] == "skirt":
        draw.polygon([(cx - bw * 0.5, t1), (cx + bw * 0.5, t1), (cx + bw * 0.7, t1 + 0.22 * fh),
                      (cx - bw * 0.7, t1 + 0.22 * fh)], fill=lower)
    # arms
    arm_w = bw * 0.2
    for s in ((-1, 1) if view != "side" else (side,)):
        ax = cx + s * (bw / 2 + arm_w / 2) + (s * rng.uniform(0, 0.1) * bw)
        arm = [ax - arm_w / 2, t0, ax + arm_w / 2, t1 + 0.05 * fh]
        draw.rectangle(arm, fill=ident["skin"])
        sleeve_end = arm[3] if ident["long_sleeves"] else t0 + 0.12 * fh
        draw.rectangle([arm[0], arm[1], arm[2], sleeve_end], fill=ident["upper"])
    _garment(draw, [cx - bw / 2, t0, cx + bw / 2, t1], ident, view, rng)
    if ident["bag"] == "backpack":
        if view == "back":
            draw.rectangle([cx - bw * 0.35, t0 + 0.03 * fh, cx + bw * 0.35, t0 + 0.3 * fh],
                           fill=ident["bag_colour"])
        elif view == "front":
            for s in (-1, 1):
                draw.line([cx + s * bw * 0.3, t0, cx + s * bw * 0.3, t0 + 0.2 * fh],
                          fill=ident["bag_colour"], width=SS * 2)
    elif ident["bag"] == "shoulder" and (view != "side" or side > 0):
        bx = cx + side * (bw / 2 + arm_w + bw * 0.12)
        draw.rectangle([bx - bw * 0.2, t1 - 0.08 * fh, bx + bw * 0.2, t1 + 0.08 * fh],
                       fill=ident["bag_colour"])
        draw.line([bx, t1 - 0.08 * fh, cx - side * bw * 0.3, t0], fill=ident["bag_colour"], width=SS)
    # head
    hx, hy = cx + lean, top + r
    draw.ellipse([hx - r * 0.85, hy - r, hx + r * 0.85, hy + r],
                 fill=ident["hair"] if view == "back" else ident["skin"])
    draw.chord([hx - r * 0.9, hy - r * 1.05, hx + r * 0.9, hy + r * 0.4], 180, 360, fill=ident["hair"])
    if ident["long_hair"]:
        draw.rectangle([hx - r * 0.9, hy - r * 0.2, hx - r * 0.55, hy + r * 1.6], fill=ident["hair"])
        draw.rectangle([hx + r * 0.55, hy - r * 0.2, hx + r * 0.9, hy + r * 1.6], fill=ident["hair"])
        if view == "back":
            draw.rectangle([hx - r * 0.9, hy, hx + r * 0.9, hy + r * 1.6], fill=ident["hair"])
    if ident["hat"] is not None:
        draw.rectangle([hx - r, hy - r * 1.15, hx + r, hy - r * 0.35], fill=ident["hat"])
    return cx, top, bw, fh


def render(seed: int, world: str, pid: int, cam: int, n: int, height: int, width: int,
           role: str = "person", box: str = "labeled") -> Image.Image:
    """One image of person `pid` seen by camera `cam` (0-based), the n-th of that pair.

    role: "person"; "distractor" (Market 0000: a bad detection, mostly background or a person cut
    off) or "junk" (Market -1: a fragment). box: "labeled" (tight) or "detected" (jittered crop).
    """
    style = STYLES[world]
    rng = item_rng(seed, world, role, box == "detected", pid, cam, n)
    cam_f = camera(seed, world, cam)
    bw_, bh_ = width * SS, height * SS
    cw, ch = int(round(bw_ * MARGIN)), int(round(bh_ * MARGIN))
    ox, oy = (cw - bw_) / 2, (ch - bh_) / 2
    img = Image.new("RGB", (cw, ch))
    draw = ImageDraw.Draw(img)
    # one scene per (pid, cam, n): the labeled and the detected box see the same scene
    scene = item_rng(seed, world, role, pid, cam, n)
    _background(draw, cam_f, scene, cw, ch)
    view = VIEWS[scene.choice(3, p=cam_f["views"])]
    if role == "person":
        ident = identity(seed, world, pid)
        _person(draw, ident, view, scene, ox, oy, bw_, bh_, style)
    else:
        # a random passer-by, cut off or tiny
        ident = identity(seed, world, 100000 + int(scene.integers(1 << 20)))
        shift = scene.uniform(0.3, 0.7) * bh_ * scene.choice([-1, 1])
        _person(draw, ident, view, scene, ox + scene.uniform(-0.4, 0.4) * bw_, oy + shift, bw_, bh_, style)
    if scene.random() < style.p_occlude:
        colour = jitter_colour(scene, (90, 90, 90), 50)
        if scene.random() < 0.5:   # something in front of the legs
            y = oy + bh_ * scene.uniform(0.6, 0.8)
            draw.rectangle([0, y, cw, ch], fill=colour)
        else:                      # a pole or another person at one side
            x = ox + bw_ * scene.uniform(0.0, 0.3)
            if scene.random() < 0.5:
                draw.rectangle([0, 0, x, ch], fill=colour)
            else:
                draw.rectangle([cw - x, 0, cw, ch], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(scene.uniform(*style.blur)))
    if box == "detected":
        dx, dy = rng.uniform(-0.12, 0.12) * bw_, rng.uniform(-0.08, 0.08) * bh_
        sc = rng.uniform(0.88, 1.15)
        w2, h2 = bw_ * sc, bh_ * sc
        x0 = float(np.clip(ox + (bw_ - w2) / 2 + dx, 0, cw - w2))
        y0 = float(np.clip(oy + (bh_ - h2) / 2 + dy, 0, ch - h2))
    else:
        x0, y0, w2, h2 = ox, oy, bw_, bh_
    crop = img.resize((width, height), Image.BILINEAR, box=(x0, y0, x0 + w2, y0 + h2), reducing_gap=None)
    arr = np.asarray(crop, dtype=np.float64)
    arr = arr * cam_f["gain"] * scene.uniform(0.85, 1.15) + cam_f["offset"]
    return finish(arr, rng, noise=3.0)
