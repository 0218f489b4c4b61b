"""The generic prior domain (the toy stand-in for ImageNet): shapes, textures and people.

Shape class k has a shape (circle, square, triangle, star, ring, cross, diamond, hexagon), a texture
(solid, stripes, dots, checks, gradient) and a hue; beyond 40 classes the hue alone separates
classes. Per image: position, size, rotation, colour jitter, background colour and noise.

Three "people" classes follow the shapes, as ImageNet holds people (and DiT-XL/2 draws them):
an outdoor person, an indoor person and a face, each image a FRESH random identity drawn by the
toy world's own person and face renderers, in identity and camera namespaces that no benchmark
uses. The prior so learns what a person and a face look like in general, and the cold start only
has to learn who is who. No benchmark identity is in the prior.
"""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from rgsyn.data.toy import finish, item_rng, jitter_colour

SS = 2
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
TEXTURES = ("solid", "stripes", "dots", "checks", "gradient")
PEOPLE = ("person_outdoor", "person_indoor", "face")
# identity and camera numbers of the prior's people: far from every benchmark's (pids < 10^5,
# distractors 10^5 + 2^20, cameras < 10)
PEOPLE_ID_BASE = 2_000_000
PEOPLE_CAM_BASE = 100
PEOPLE_CAMS = 16


def class_name(k: int) -> str:
    return f"{k:03d}_{SHAPES[k % len(SHAPES)]}_{TEXTURES[(k // len(SHAPES)) % len(TEXTURES)]}"


def people_class_name(n_shape_classes: int, j: int) -> str:
    """Name of people class j (0..2), numbered after the shape classes."""
    return f"{n_shape_classes + j:03d}_{PEOPLE[j]}"


def render_people(seed: int, j: int, n: int, size: int) -> Image.Image:
    """Image n of people class j: a random person (2*size x size, like the person benchmarks) or a
    random face (size x size)."""
    from rgsyn.data.toy import faces, persons
    from rgsyn.paths import RFW_GROUPS

    if PEOPLE[j] == "face":
        group = RFW_GROUPS[n % len(RFW_GROUPS)]
        ident = faces.identity(seed, "prior", n, group)
        rng = item_rng(seed, "prior-face", n)
        return faces.render(ident, faces.nuisance(rng, base_age=ident["age"]), size, rng)
    world = "market" if PEOPLE[j] == "person_outdoor" else "cuhk03"
    cam = PEOPLE_CAM_BASE + n % PEOPLE_CAMS
    return persons.render(seed, world, PEOPLE_ID_BASE + n, cam, 0, 2 * size, size)


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "star":
        ang = rot + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2, r * 0.45, r)
    else:
        n = {"square": 4, "triangle": 3, "diamond": 4, "hexagon": 6}[shape]
        ang = rot + np.arange(n) * 2 * np.pi / n + (np.pi / 4 if shape == "square" else 0)
        rad = np.full(n, r) * (np.where(np.arange(n) % 2, 0.6, 1.0) if shape == "diamond" else 1)
    return [(float(cx + q * np.cos(a)), float(cy + q * np.sin(a))) for a, q in zip(ang, rad)]


def render(seed: int, k: int, n: int, size: int) -> Image.Image:
    rng = item_rng(seed, "prior", k, n)
    shape, texture = SHAPES[k % len(SHAPES)], TEXTURES[(k // len(SHAPES)) % len(TEXTURES)]
    hue = (k * 0.618034) % 1.0
    base = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.9)) * 255
    colour = jitter_colour(rng, base, 12)
    second = jitter_colour(rng, 255 - base, 30)
    s = size * SS
    bg = tuple(int(v) for v in rng.integers(0, 256, 3) * 0.6 + 50)
    img = Image.new("RGB", (s, s), bg)
    # the texture fills the canvas; the shape is a mask over it
    tex = Image.new("RGB", (s, s), colour)
    td = ImageDraw.Draw(tex)
    period = int(rng.integers(3, 6)) * SS
    if texture == "stripes":
        for x in range(0, s, 2 * period):
            td.rectangle([x, 0, x + period - 1, s], fill=second)
        tex = tex.rotate(float(rng.uniform(0, 180)), resample=Image.BILINEAR)
    elif texture == "dots":
        for y in range(0, s, 2 * period):
            for x in range(0, s, 2 * period):
                td.ellipse([x, y, x + period, y + period], fill=second)
    elif texture == "checks":
        for i, y in enumerate(range(0, s, period)):
            for j, x in enumerate(range(0, s, period)):
                if (i + j) % 2:
                    td.rectangle([x, y, x + period - 1, y + period - 1], fill=second)
    elif texture == "gradient":
        t = np.linspace(0, 1, s)[None, :, None]
        arr = np.asarray(colour, float) * (1 - t) + np.asarray(second, float) * t
        tex = Image.fromarray(np.repeat(arr, s, axis=0).astype(np.uint8), "RGB")
    mask = Image.new("L", (s, s), 0)
    md = ImageDraw.Draw(mask)
    r = s * rng.uniform(0.25, 0.42)
    cx, cy = s / 2 + rng.uniform(-0.15, 0.15) * s, s / 2 + rng.uniform(-0.15, 0.15) * s
    rot = float(rng.uniform(0, 2 * np.pi))
    if shape == "circle":
        md.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        md.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        md.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)
    elif shape == "cross":
        w = r * 0.35
        md.rectangle([cx - r, cy - w, cx + r, cy + w], fill=255)
        md.rectangle([cx - w, cy - r, cx + w, cy + r], fill=255)
        mask = mask.rotate(float(np.degrees(rot)), resample=Image.BILINEAR, center=(cx, cy))
    else:
        md.polygon(_polygon(shape, cx, cy, r, rot), fill=255)
    img.paste(tex, (0, 0), mask)
    img = img.resize((size, size), Image.BILINEAR)
    return finish(np.asarray(img, dtype=np.float64), rng, noise=4.0)
