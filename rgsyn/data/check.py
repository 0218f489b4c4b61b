"""`rgsyn data check`: read a dataset folder with the real reader, open every image, count.

The summary gives ids and images per split and, for the `paper` profile, whether the counts are
the official ones (PAPER.md: "Downstream protocols"); for toy/smoke data `official_match` is null.
Any layout problem or unreadable image raises one `DataError` (the CLI prints it and exits 2).
"""
from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from rgsyn.data.cuhk03 import MODES, read_cuhk03
from rgsyn.data.faces import bin_path, read_bin, read_id_folders, read_pairs
from rgsyn.data.images import IMAGE_SUFFIXES, decode_bytes, verify_image
from rgsyn.data.market import check_root, read_market1501
from rgsyn.data.rfw import read_rfw, read_rfw_landmarks
from rgsyn.errors import DataError
from rgsyn.paths import RFW_GROUPS, VERIFICATION_SETS

# Official counts (PAPER.md; Market/CUHK03 as counted by torchreid: junk -1 excluded, 0000 kept).
OFFICIAL = {
    "market1501": {"train": {"ids": 751, "images": 12936}, "query": {"images": 3368},
                   "gallery": {"images": 15913}},
    "cuhk03": {
        "labeled": {"train": {"ids": 767, "images": 7368}, "query": {"ids": 700, "images": 1400},
                    "gallery": {"ids": 700, "images": 5328}},
        "detected": {"train": {"ids": 767, "images": 7365}, "query": {"ids": 700, "images": 1400},
                     "gallery": {"ids": 700, "images": 5332}},
    },
    # the full CASIA-WebFace; the paper trains on a subset of unreported size
    "casia_face": {"ids": 10575, "images": 494414},
    "verification": {"lfw": 6000, "agedb": 6000, "calfw": 6000, "cfp_fp": 7000, "cplfw": 6000},
    "rfw_bias": {g: 6000 for g in RFW_GROUPS},
}
CHECKS = ("market1501", "cuhk03", "casia_face", "rfw_bias", "verification", "prior")


def _verify_all(paths, desc: str, progress: bool) -> int:
    return len(_verify_sizes(paths, desc, progress))


def _verify_sizes(paths, desc: str, progress: bool, where=None) -> list[tuple[int, int]]:
    """Open and decode every image; their (width, height) in path order. PIL releases the GIL
    while decoding, so a thread pool scales on the real datasets (CASIA-WebFace: ~0.5M files);
    results are consumed in order, so the error raised is the one of the first broken file in
    path order. `where(path)` names an image in errors (default: its path)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(paths)
    workers = min(8, os.cpu_count() or 1) if len(paths) > 512 else 1
    bar = tqdm(total=len(paths), desc=f"check {desc}", unit="img", disable=not progress, leave=False)
    sizes = []
    with ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(paths), 4096):   # bounded number of pending futures
            chunk = paths[i:i + 4096]
            for size in pool.map(verify_image, chunk, [where(p) if where else None for p in chunk]):
                sizes.append(size)
                bar.update()
    bar.close()
    return sizes


def face_alignment(sizes) -> dict:
    """Whether a face set looks aligned: every image at the 112x112 template size (insightface's
    crops), else raw faces that need `face.align: mtcnn`. `image_sizes`: the five commonest."""
    from collections import Counter

    from rgsyn.data.align import ALIGNED_SIZE

    count = Counter(f"{w}x{h}" for w, h in sizes)
    aligned = bool(count) and set(count) == {f"{ALIGNED_SIZE}x{ALIGNED_SIZE}"}
    return {"image_sizes": dict(count.most_common(5)), "n_image_sizes": len(count), "aligned": aligned,
            "alignment": (f"aligned (all images {ALIGNED_SIZE}x{ALIGNED_SIZE})" if aligned
                          else "not aligned: needs face.align: mtcnn")}


def require_one_size(summary: dict, where: str) -> None:
    """Under `face.align: none` images are only resized: a set of mixed sizes is raw faces."""
    if summary.get("n_image_sizes", 1) > 1:
        sizes = ", ".join(f"{k}: {v}" for k, v in summary["image_sizes"].items())
        raise DataError(f"face images under {where} come in {summary['n_image_sizes']} sizes ({sizes}); "
                        "with face.align: none every face must already be aligned at one size (112x112); "
                        "set face.align: mtcnn to align them")


def _match(counts: dict, official: dict) -> bool:
    """True if every official number equals the counted one (nested dicts)."""
    for k, v in official.items():
        if isinstance(v, dict):
            if not isinstance(counts.get(k), dict) or not _match(counts[k], v):
                return False
        elif counts.get(k) != v:
            return False
    return True


def _reid_summary(splits_all, splits) -> dict:
    gallery_all = splits_all.gallery
    return {"splits": splits.counts(),
            "junk_images": sum(r.pid == -1 for r in gallery_all + splits_all.query + splits_all.train),
            "distractor_images": sum(r.pid == 0 for r in gallery_all)}


def _check_market(root: Path, progress: bool) -> tuple[dict, dict]:
    with_junk = read_market1501(root, keep_junk=True)
    recs = with_junk.train + with_junk.query + with_junk.gallery
    n = _verify_all([r.path for r in recs], "market1501", progress)
    out = _reid_summary(with_junk, read_market1501(root))
    out["images_checked"] = n
    return out, out["splits"]


def _check_cuhk03(root: Path, progress: bool) -> tuple[dict, dict]:
    modes = [m for m in MODES if (root / m).is_dir()]
    if not modes:
        raise DataError(f"CUHK03-NP root {root} has neither labeled/ nor detected/; expected "
                        f"{root}/labeled/ and {root}/detected/, each with bounding_box_train/, "
                        "bounding_box_test/ and query/")
    out, counts, n = {"modes": {}}, {}, 0
    for mode in modes:
        splits = read_cuhk03(root, mode)
        n += _verify_all([r.path for r in splits.train + splits.query + splits.gallery],
                         f"cuhk03 {mode}", progress)
        out["modes"][mode] = {"splits": splits.counts()}
        counts[mode] = splits.counts()
    out["images_checked"] = n
    return out, counts


def _check_casia(root: Path, progress: bool) -> tuple[dict, dict]:
    from rgsyn.data.recordio import rec_files

    rec = rec_files(root)
    recs = read_id_folders(root)
    # unpacked records are named by train.rec and their key (the file name), not the cache path
    where = (lambda p: f"RecordIO file {rec[0]}: record {int(Path(p).stem)} (unpacked to {p})") if rec else None
    sizes = _verify_sizes([r.path for r in recs], "casia_face", progress, where)
    per_id: dict[str, int] = {}
    for r in recs:
        per_id[r.identity] = per_id.get(r.identity, 0) + 1
    counts = {"ids": len(per_id), "images": len(recs)}
    return {**counts, "min_images_per_id": min(per_id.values()),
            "max_images_per_id": max(per_id.values()), "images_checked": len(sizes),
            "format": "recordio" if rec else "id folders", **face_alignment(sizes)}, counts


def _pairs_images(pairset) -> list[str]:
    return sorted({p for a, b, _ in pairset.pairs for p in (a, b)})


def _decoded_sizes(images: list[bytes], found: Path, name: str, progress: bool) -> list[tuple[int, int]]:
    """Decode every image of a `.bin`; an object the file refers to several times is decoded once."""
    by_id: dict[int, tuple[int, int]] = {}
    for i, data in enumerate(tqdm(images, desc=f"check {name}", disable=not progress, leave=False)):
        if id(data) not in by_id:
            by_id[id(data)] = decode_bytes(data, f"{found} image {i}").size
    return [by_id[id(data)] for data in images]


def _check_verification(root: Path, progress: bool) -> tuple[dict, dict]:
    out, counts, n = {"sets": {}}, {}, 0
    for name in VERIFICATION_SETS:
        folder = root / name
        found = bin_path(root, name)
        if (folder / "pairs.txt").is_file():
            ps = read_pairs(folder)
            sizes = _verify_sizes(_pairs_images(ps), name, progress)
            n += len(sizes)
            out["sets"][name] = {"format": "pairs.txt", **ps.counts(), **face_alignment(sizes)}
            counts[name] = len(ps.pairs)
        elif found is not None:
            images, issame = read_bin(found)
            sizes = _decoded_sizes(images, found, name, progress)
            n += len(images)
            # insightface's crops: used as they are whatever their size, never aligned again
            out["sets"][name] = {"format": "bin", "pairs": len(issame), "matched": sum(issame),
                                 "mismatched": len(issame) - sum(issame), "images": len(images),
                                 **face_alignment(sizes), "aligned": True,
                                 "alignment": "aligned (.bin: used as it is)"}
            counts[name] = len(issame)
        else:
            raise DataError(f"verification set {name!r} is missing under {root}; expected "
                            f"{folder}/pairs.txt with its images, or {root}/{name}.bin")
    out["images_checked"] = n
    return out, counts


def _check_rfw(root: Path, progress: bool) -> tuple[dict, dict]:
    sets = read_rfw(root)
    out, counts, n = {"groups": {}}, {}, 0
    for group, ps in sets.items():
        data = root / "test" / "data" / group
        files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"RFW group folder {data} has no images; expected <id>/<id>_<i:04d>.jpg")
        sizes = _verify_sizes(files, f"rfw {group}", progress)
        n += len(sizes)
        lmk = len(read_rfw_landmarks(root, group))
        out["groups"][group] = {**ps.counts(), "images_in_folder": len(files), **face_alignment(sizes),
                                "landmarks": lmk}
        if lmk and not out["groups"][group]["aligned"]:
            out["groups"][group]["alignment"] += f" (landmarks from {group}_lmk.txt, no detection)"
        counts[group] = len(ps.pairs)
    out["images_checked"] = n
    return out, counts


def _check_prior(root: Path, progress: bool) -> tuple[dict, dict]:
    recs = read_id_folders(root)   # one folder per class, the same layout as id folders
    n = _verify_all([r.path for r in recs], "prior", progress)
    counts = {"classes": len({r.identity for r in recs}), "images": len(recs)}
    return {**counts, "images_checked": n}, counts


def check_dataset(benchmark: str, root: str | os.PathLike, profile: str = "paper",
                  progress: bool = True) -> dict:
    """Check one dataset folder; returns a JSON-able summary (see the module docstring).

    benchmark: market1501 | cuhk03 | casia_face | rfw_bias, plus `verification` (a folder with
    lfw/ agedb/ calfw/ cfp_fp/ cplfw/ pairs folders or insightface .bin files) and `prior`."""
    fn = {"market1501": _check_market, "cuhk03": _check_cuhk03, "casia_face": _check_casia,
          "rfw_bias": _check_rfw, "verification": _check_verification, "prior": _check_prior}.get(benchmark)
    if fn is None:
        raise DataError(f"unknown benchmark {benchmark!r}; expected one of {list(CHECKS)}")
    root = check_root(root, benchmark)
    summary, counts = fn(root, progress)
    official = OFFICIAL.get(benchmark)
    if profile == "paper" and official is not None:
        if benchmark == "cuhk03":
            match = all(_match(counts[m], official[m]) for m in counts)
        else:
            match = _match(counts, official)
    else:
        match = None
    summary.update({"benchmark": benchmark, "root": str(root), "profile": profile, "ok": True,
                    "official": official, "official_match": match})
    if benchmark == "casia_face":
        summary["official_note"] = ("official = the full CASIA-WebFace; the paper trains on a subset "
                                    "of unreported size, so a subset does not match")
    return summary
