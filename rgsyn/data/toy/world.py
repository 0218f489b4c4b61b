"""Build the toy identity world into one folder, in the real datasets' layouts.

    <out>/market1501/{bounding_box_train,bounding_box_test,query}/0002_c1s1_000451_03.jpg
    <out>/cuhk03/{labeled,detected}/{bounding_box_train,bounding_box_test,query}/0001_c1_1.png
    <out>/casia/<identity>/<nnn>.jpg
    <out>/verification/{lfw,agedb,calfw,cfp_fp,cplfw}/pairs.txt + <name>/<name>_<i:04d>.jpg
    <out>/rfw/test/data/<Group>/<id>/<id>_<i:04d>.jpg + rfw/test/txts/<Group>/<Group>_pairs.txt
    <out>/prior/<class>/<nnnn>.png
    <out>/summary.json

`plan_world` lists every file as a job (path + what to draw); `build_world` renders the jobs in a
few worker processes. The bytes of each file depend only on the seed and the job, so the world is
identical for any number of workers.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgsyn.config import DataParams, PersonWorld
from rgsyn.data.toy import encode, item_rng
from rgsyn.data.toy import faces as toy_faces
from rgsyn.data.toy import persons as toy_persons
from rgsyn.data.toy import prior as toy_prior
from rgsyn.errors import ConfigError
from rgsyn.paths import RFW_GROUPS, VERIFICATION_SETS


@dataclass(frozen=True)
class Job:
    path: str          # relative to the world root
    kind: str          # person | face | prior | prior_people
    args: tuple


# Verification sets: (yaw of image 1, yaw of image 2, age of image 1, age of image 2,
# mismatched pairs drawn from the same group?)
YAW = {"mild": ((-0.35, 0.35), 1), "frontal": ((-0.1, 0.1), 1), "half": ((0.3, 0.6), -1),
       "profile": ((0.7, 1.0), -1)}   # -1: the sign is drawn per image
VERIFICATION_SPECS = {
    "lfw": ("mild", "mild", None, None, False),
    "agedb": ("mild", "mild", "young", "old", False),
    "calfw": ("mild", "mild", "young", "old", True),
    "cfp_fp": ("frontal", "profile", None, None, False),
    "cplfw": ("half", "profile", None, None, True),
}
RFW_SPEC = ("mild", "mild", None, None, True)

FACTORS = {
    "market1501": "persons, 6 cameras, outdoors. Identity: upper/lower clothing colours from a shared "
                  "palette (+ a small per-person tint), upper pattern (solid/stripes/checks), chest logo "
                  "(front only), sleeves, trousers/shorts/skirt, build, skin, hair, shoes, hat, bag "
                  "(none/shoulder/backpack). Nuisance: camera colour cast, background and viewpoint "
                  "(front/back/side), pose and scale jitter, clutter, occlusion, blur, brightness, noise.",
    "cuhk03": "persons, 2 cameras, indoors, muted clothes, larger figures; camera 1 mostly sees the "
              "front with a cool tint, camera 2 mostly the back with a warm tint. Same identity "
              "factors as Market. labeled = tight boxes; detected = the same scenes with jittered, "
              "mis-scaled boxes.",
    "casia": "faces, imbalanced across the four groups (data.faces.group_shares). Identity: face "
             "shape (width, height, jaw), eye spacing/height/size, iris colour, brows, nose, mouth, "
             "lips, skin tone of the group, hair colour and style, moustache, base age. Nuisance: "
             "expression (mouth curve/opening, eye opening), yaw (|yaw| < 0.5), roll, scale, "
             "position, directional lighting, brightness, colour temperature, age around the base "
             "age (wrinkles, greying), background, blur, noise.",
    "lfw": "verification, mild nuisances (|yaw| < 0.35), groups balanced.",
    "agedb": "verification, age gap: image 1 young (age < 0.2), image 2 old (age > 0.75) in every pair.",
    "calfw": "verification, age gap as agedb, and mismatched pairs come from the same group.",
    "cfp_fp": "verification, image 1 frontal (|yaw| < 0.1), image 2 profile (|yaw| 0.7-1.0).",
    "cplfw": "verification, cross-pose: half profile (|yaw| 0.3-0.6) vs profile (|yaw| 0.7-1.0), "
             "mismatched pairs from the same group.",
    "rfw": "verification per group, the four groups balanced, mild nuisances, mismatched pairs "
           "within the group.",
    "prior": "generic domain: class = shape x texture x hue; per image position, size, rotation, "
             "colour jitter, background, noise. Plus three people classes (outdoor person, indoor "
             "person, face; data.prior.people_per_class images each), every image a fresh random "
             "identity that no benchmark uses.",
}


# ------------------------------------------------------------------------------- persons
def _pids(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.arange(1, max(1501, n) + 1), n, replace=False)


def _shots(cams: list, pw: PersonWorld, is_test: bool) -> list[tuple[int, int, int]]:
    """(camera position, camera, image number at that camera) of one identity's images: every
    camera x imgs_per_id_cam, or for a training identity with `train_imgs_per_id` that many images
    round-robin over its cameras."""
    if is_test or not pw.train_imgs_per_id:
        return [(ci, cam, n) for ci, cam in enumerate(cams) for n in range(pw.imgs_per_id_cam)]
    k = len(cams)
    return [(i % k, cams[i % k], i // k) for i in range(pw.train_imgs_per_id)]


def plan_persons(seed: int, world: str, pw: PersonWorld, name_fmt: str, ext: str,
                 section: str = "data.market") -> tuple[list[tuple], dict]:
    """Return ([(split_dir, file name, render args)], counts) for one person world."""
    if pw.cams_per_id > pw.n_cams:
        raise ConfigError(f"{section}.cams_per_id: value {pw.cams_per_id} is larger than "
                          f"{section}.n_cams = {pw.n_cams}; allowed at most n_cams")
    rng = item_rng(seed, world, "plan")
    pids = _pids(rng, pw.n_train_ids + pw.n_test_ids)
    train, test = sorted(pids[:pw.n_train_ids]), sorted(pids[pw.n_train_ids:])
    entries = []
    for split_pids, is_test in ((train, False), (test, True)):
        # the test split (and the distractors) draw from their own stream, so the training-set
        # size (train_imgs_per_id) leaves the query and gallery images as they are
        rng = item_rng(seed, world, "plan-test") if is_test else rng
        for pid in split_pids:
            cams = sorted(rng.choice(pw.n_cams, pw.cams_per_id, replace=False))
            seq = int(rng.integers(1, 7))
            for ci, cam, n in _shots(cams, pw, is_test):
                if not is_test:
                    split = "bounding_box_train"
                elif n == 0 and (pw.imgs_per_id_cam >= 2 or ci == 0):
                    split = "query"    # one query per camera (Market/CUHK03 protocol)
                else:
                    split = "bounding_box_test"
                fname = name_fmt.format(pid=f"{pid:04d}", cam=cam + 1, seq=seq,
                                        frame=int(rng.integers(1, 9999)) * 100 + n, n=n + 1, box=1)
                entries.append((split, fname + ext, (int(pid), int(cam), n, "person")))
    for role, count, pid_str in (("distractor", pw.n_distractors, "0000"), ("junk", pw.n_junk, "-1")):
        for i in range(count):
            cam = int(rng.integers(pw.n_cams))
            fname = name_fmt.format(pid=pid_str, cam=cam + 1, seq=int(rng.integers(1, 7)),
                                    frame=i, n=i + 1, box=int(rng.integers(1, 9)))
            entries.append(("bounding_box_test", fname + ext, (0 if role == "distractor" else -1, cam, i, role)))
    counts = {
        "train_ids": len(train), "test_ids": len(test),
        "train_images": sum(e[0] == "bounding_box_train" for e in entries),
        "query_images": sum(e[0] == "query" for e in entries),
        "gallery_images": sum(e[0] == "bounding_box_test" and e[2][3] == "person" for e in entries),
        "distractors": pw.n_distractors, "junk": pw.n_junk,
    }
    return entries, counts


MARKET_NAME = "{pid}_c{cam}s{seq}_{frame:06d}_{box:02d}"
CUHK03_NAME = "{pid}_c{cam}_{n}"


def _person_jobs(seed: int, world: str, pw: PersonWorld, root: str, name_fmt: str, ext: str,
                 boxes: tuple[str, ...], section: str) -> tuple[list[Job], dict]:
    entries, counts = plan_persons(seed, world, pw, name_fmt, ext, section=section)
    jobs = []
    for box in boxes:
        base = f"{root}/{box}" if len(boxes) > 1 else root
        for split, fname, (pid, cam, n, role) in entries:
            jobs.append(Job(f"{base}/{split}/{fname}", "person",
                            (world, pid, cam, n, pw.height, pw.width, role, box)))
    return jobs, counts


# --------------------------------------------------------------------------------- faces
def _face_job(path: str, set_name: str, index: int, group: str, image_no: int, yaw: str,
              age: str | None, size: int) -> Job:
    return Job(path, "face", (set_name, index, group, image_no, yaw, age, size))


def _pair_set(seed: int, set_name: str, n_pairs: int, spec: tuple, size: int, image_dir: str,
              names: str, group: str | None = None):
    """Jobs and folds of one verification set: 10 folds, each with m identities, m matched pairs
    (image 1 vs image 2 of one identity) and m mismatched (image 1 of a vs image 2 of b)."""
    yaw1, yaw2, age1, age2, same_group = spec
    m = n_pairs // 20
    rng = item_rng(seed, set_name, "plan")
    jobs, folds, k = [], [], 0
    for fold in range(10):
        ids = []
        for i in range(max(m, 2)):   # a mismatched pair needs two identities in the fold
            g = group or RFW_GROUPS[(fold * m + i) % len(RFW_GROUPS)]
            name = names.format(k=k)
            ids.append((name, g))
            for image_no, yaw, age in ((1, yaw1, age1), (2, yaw2, age2)):
                jobs.append(_face_job(f"{image_dir}/{name}/{name}_{image_no:04d}.jpg", set_name, k, g,
                                      image_no, yaw, age, size))
            k += 1
        lines = [(name, 1, 2) for name, _ in ids[:m]]
        for i in rng.permutation(m):
            name, g = ids[i]
            pool = [j for j in range(len(ids)) if j != i and (not same_group or ids[j][1] == g)]
            pool = pool or [j for j in range(len(ids)) if j != i]
            j = pool[int(rng.integers(len(pool)))]
            lines.append((name, 1, ids[j][0], 2))
        folds.append(lines)
    return jobs, folds


def plan_world(dp: DataParams) -> tuple[list[Job], dict[str, list], dict]:
    """(jobs, pairs files {relative path: (folds, header)}, counts) of the whole world."""
    seed = dp.seed
    jobs, pairs, counts = [], {}, {}
    j, counts["market1501"] = _person_jobs(seed, "market", dp.market, "market1501", MARKET_NAME,
                                           ".jpg", ("labeled",), "data.market")
    jobs += j
    j, counts["cuhk03"] = _person_jobs(seed, "cuhk03", dp.cuhk03, "cuhk03", CUHK03_NAME, ".png",
                                       ("labeled", "detected"), "data.cuhk03")
    jobs += j
    fw = dp.faces
    if len(fw.group_shares) != len(RFW_GROUPS) or min(fw.group_shares) < 0 or sum(fw.group_shares) <= 0:
        raise ConfigError(f"data.faces.group_shares: value {fw.group_shares} is not allowed; expected "
                          f"{len(RFW_GROUPS)} non-negative shares in the order {list(RFW_GROUPS)}")
    groups = toy_faces.groups_for(fw.n_train_ids, fw.group_shares)
    order = item_rng(seed, "casia", "plan").permutation(fw.n_train_ids)
    id_groups = {}
    for rank, idx in enumerate(order):
        name = f"{rank + 1:07d}"
        id_groups[name] = groups[idx]
        for n in range(fw.imgs_per_id):
            jobs.append(_face_job(f"casia/{name}/{n + 1:03d}.jpg", "casia", int(idx), groups[idx], n,
                                  "casia", None, fw.size))
    counts["casia"] = {"ids": fw.n_train_ids, "images": fw.n_train_ids * fw.imgs_per_id,
                       "ids_per_group": {g: groups.count(g) for g in RFW_GROUPS},
                       "identity_group": dict(sorted(id_groups.items()))}
    for set_name in VERIFICATION_SETS:
        root = f"verification/{set_name}"
        j, folds = _pair_set(seed, set_name, fw.n_pairs, VERIFICATION_SPECS[set_name], fw.size, root,
                             set_name + "_{k:05d}")
        jobs += j
        pairs[f"{root}/pairs.txt"] = (folds, True)
        counts[set_name] = {"pairs": 20 * (fw.n_pairs // 20), "folds": 10, "images": len(j)}
    counts["rfw"] = {}
    for group in RFW_GROUPS:
        data = f"rfw/test/data/{group}"
        j, folds = _pair_set(seed, f"rfw-{group}", fw.n_rfw_pairs, RFW_SPEC, fw.size, data,
                             "m." + group[:2].lower() + "{k:05d}", group=group)
        jobs += j
        pairs[f"rfw/test/txts/{group}/{group}_pairs.txt"] = (folds, False)
        counts["rfw"][group] = {"pairs": 20 * (fw.n_rfw_pairs // 20), "images": len(j)}
    pr = dp.prior
    for k in range(pr.n_classes):
        for n in range(pr.imgs_per_class):
            jobs.append(Job(f"prior/{toy_prior.class_name(k)}/{n:04d}.png", "prior", (k, n, pr.size)))
    n_people = len(toy_prior.PEOPLE) if pr.people_per_class else 0
    for j in range(n_people):
        for n in range(pr.people_per_class):
            jobs.append(Job(f"prior/{toy_prior.people_class_name(pr.n_classes, j)}/{n:04d}.png",
                            "prior_people", (j, n, pr.size)))
    counts["prior"] = {"classes": pr.n_classes + n_people,
                       "images": pr.n_classes * pr.imgs_per_class + n_people * pr.people_per_class}
    return jobs, pairs, counts


# ------------------------------------------------------------------------------- render
def _yaw(rng: np.random.Generator, spec: str) -> tuple[float, float]:
    if spec == "casia":
        return (-0.5, 0.5)
    (lo, hi), signed = YAW[spec]
    if signed < 0:
        sign = 1 if rng.random() < 0.5 else -1
        return (lo, hi) if sign > 0 else (-hi, -lo)
    return (lo, hi)


def render_job(seed: int, job: Job) -> bytes:
    if job.kind == "person":
        world, pid, cam, n, h, w, role, box = job.args
        img = toy_persons.render(seed, world, pid, cam, n, h, w, role, box)
        return encode(img, "PNG" if job.path.endswith(".png") else "JPEG")
    if job.kind == "face":
        set_name, index, group, image_no, yaw, age, size = job.args
        ident = toy_faces.identity(seed, set_name, index, group)
        rng = item_rng(seed, "face-image", set_name, index, image_no)
        fixed_age = {None: None, "young": float(rng.uniform(0.0, 0.2)),
                     "old": float(rng.uniform(0.75, 1.0))}[age]
        nuis = toy_faces.nuisance(rng, _yaw(rng, yaw), fixed_age, ident["age"])
        return encode(toy_faces.render(ident, nuis, size, rng), "JPEG")
    if job.kind == "prior":
        k, n, size = job.args
        return encode(toy_prior.render(seed, k, n, size), "PNG")
    if job.kind == "prior_people":
        j, n, size = job.args
        return encode(toy_prior.render_people(seed, j, n, size), "PNG")
    raise ValueError(f"unknown job kind {job.kind!r}")


def _render_chunk(seed: int, root: str, jobs: list[Job]) -> int:
    for job in jobs:
        path = os.path.join(root, job.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(render_job(seed, job))
    return len(jobs)


def build_world(dp: DataParams, root: str | os.PathLike, workers: int = 1, progress: bool = True) -> dict:
    """Render the whole world into `root` (which should be empty; the stage passes a temp folder
    and renames it afterwards). Returns the summary written to `root/summary.json`."""
    from tqdm import tqdm

    from rgsyn import io as rio
    from rgsyn.data.faces import write_pairs

    root = Path(root)
    jobs, pairs, counts = plan_world(dp)
    chunk = 128
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    bar = tqdm(total=len(jobs), desc="toy world", unit="img", disable=not progress)
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for done in pool.map(_render_chunk, [dp.seed] * len(chunks), [str(root)] * len(chunks), chunks):
                bar.update(done)
    else:
        for c in chunks:
            bar.update(_render_chunk(dp.seed, str(root), c))
    bar.close()
    for rel, (folds, header) in pairs.items():
        write_pairs(root / rel, folds, header=header)
    summary = {"seed": dp.seed, "n_images": len(jobs), "counts": counts, "factors": FACTORS,
               "sizes": {"persons": [dp.market.height, dp.market.width],
                         "cuhk03": [dp.cuhk03.height, dp.cuhk03.width],
                         "faces": dp.faces.size, "prior": dp.prior.size}}
    rio.write_json(root / "summary.json", summary)
    return summary


# ------------------------------------------------------------------------------- oracle
ORACLE_N0 = 100000   # image numbers of oracle renders start here: far from any real image's


def oracle_jobs(dp: DataParams, benchmark: str, per_identity: int, cuhk03_mode: str = "labeled",
                size: tuple[int, int] | None = None) -> list[tuple[str, int, Job]]:
    """The oracle generator: `per_identity` NEW renders of every training identity of `benchmark`
    (market1501 | cuhk03 | casia_face), as (identity label, image number k, job). The identity
    factors are the training identity's own (same seed, world and pid / face index); the nuisances
    are fresh draws, because every render's random streams are keyed by its image number
    ORACLE_N0 + k, which no real image uses. Persons: camera k-th of a random permutation of all
    cameras (the generator has no notion of camera either); faces: the CASIA yaw range.
    `size` = (height, width) of the renders (default: the world's size). Job paths are unset ("")."""
    seed = dp.seed
    out = []
    if benchmark in ("market1501", "cuhk03"):
        world, pw = ("market", dp.market) if benchmark == "market1501" else ("cuhk03", dp.cuhk03)
        fmt, ext = (MARKET_NAME, ".jpg") if benchmark == "market1501" else (CUHK03_NAME, ".png")
        box = "labeled" if benchmark == "market1501" else cuhk03_mode
        h, w = size or (pw.height, pw.width)
        entries, _ = plan_persons(seed, world, pw, fmt, ext)
        pids = sorted({e[2][0] for e in entries if e[0] == "bounding_box_train"})
        for pid in pids:
            cams = item_rng(seed, world, "oracle-cameras", pid).permutation(pw.n_cams)
            for k in range(per_identity):
                cam = int(cams[k % pw.n_cams])
                out.append((str(pid), k, Job("", "person", (world, pid, cam, ORACLE_N0 + k, h, w, "person", box))))
        return out
    if benchmark == "casia_face":
        fw = dp.faces
        groups = toy_faces.groups_for(fw.n_train_ids, fw.group_shares)
        order = item_rng(seed, "casia", "plan").permutation(fw.n_train_ids)
        side = (size or (fw.size, fw.size))[0]
        for rank, idx in enumerate(order):
            name = f"{rank + 1:07d}"
            for k in range(per_identity):
                out.append((name, k, _face_job("", "casia", int(idx), groups[idx], ORACLE_N0 + k, "casia",
                                               None, side)))
        return sorted(out, key=lambda t: (t[0], t[1]))
    raise ConfigError(f"--benchmark: {benchmark!r} has no toy training identities to render")
