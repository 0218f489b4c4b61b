"""A drawn face whose five landmarks are known exactly, for alignment tests.

The canonical drawing is 250x250 (the size of a raw CASIA-WebFace / LFW image); MTCNN finds its
face and landmarks (measured: within ~3 px of the drawn points). `similarity` warps it by a known
rotation, scale and translation and moves the landmarks with it."""
from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

# left eye, right eye, nose tip, left / right mouth corner (x, y) in the 250x250 drawing
CANONICAL = np.array([[100, 115], [150, 115], [125, 145], [105, 170], [145, 170]], dtype=np.float32)
LEFT_PUPIL, RIGHT_PUPIL = (0, 255, 0), (0, 0, 255)   # marker colours (RGB), found again after warping


def draw_face(markers: bool = False, size: int = 250, skin=(225, 180, 150)) -> tuple[Image.Image, np.ndarray]:
    """(RGB image, (5, 2) landmarks). With `markers`, the pupils are pure green (left) and pure
    blue (right), so that their centres can be measured in a warped image."""
    img = np.full((size, size, 3), (130, 110, 90), np.uint8)
    (le, re, nose, ml, mr) = [tuple(int(v) for v in p) for p in CANONICAL]
    cv2.ellipse(img, (125, 140), (62, 82), 0, 0, 360, skin, -1)
    for e, pupil in ((le, LEFT_PUPIL), (re, RIGHT_PUPIL)):
        cv2.ellipse(img, e, (12, 6), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, e, 5, pupil if markers else (20, 30, 40), -1)
        cv2.ellipse(img, (e[0], e[1] - 14), (14, 3), 0, 0, 360, (30, 30, 40), -1)
    cv2.line(img, (nose[0], nose[1] - 25), nose, (200, 150, 130), 3)
    cv2.ellipse(img, nose, (8, 5), 0, 0, 360, (190, 140, 120), -1)
    cv2.ellipse(img, ((ml[0] + mr[0]) // 2, ml[1]), ((mr[0] - ml[0]) // 2, 6), 0, 0, 360, (170, 60, 60), -1)
    if not markers:
        img = cv2.GaussianBlur(img, (5, 5), 1.5)
    return Image.fromarray(img), CANONICAL.copy()


def similarity(img: Image.Image, landmarks: np.ndarray, angle_deg: float, scale: float,
               shift: tuple[float, float], out_size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """Warp by x' = s R(angle) (x - c) + c + shift (c = image centre); landmarks move the same way."""
    w, h = img.size
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.array([w / 2, h / 2])
    t = c + np.asarray(shift) - r @ c
    m = np.hstack([r, t[:, None]]).astype(np.float32)
    arr = cv2.warpAffine(np.asarray(img), m, out_size, flags=cv2.INTER_LINEAR, borderValue=(130, 110, 90))
    return Image.fromarray(arr), (landmarks @ r.T + t).astype(np.float32)


def colour_centre(img: Image.Image, rgb) -> np.ndarray:
    """(x, y) centroid of the pixels close to colour `rgb` (after interpolation blur)."""
    arr = np.asarray(img).astype(np.float32)
    dist = np.linalg.norm(arr - np.asarray(rgb, dtype=np.float32), axis=2)
    ys, xs = np.nonzero(dist < 90)
    assert len(xs), f"no pixel of colour {rgb} in the image"
    return np.array([xs.mean(), ys.mean()])
