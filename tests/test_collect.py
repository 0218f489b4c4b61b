from rgsyn import config, io, paths
from rgsyn.stages import collect


def test_collect_keys_by_variant_and_seed_and_splits_rfw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = config.from_dict({"seeds": [0, 1]})
    face = {"lfw": 0.9, "avg": 0.8, "rfw": {"African": 0.7, "mean": 0.75}}
    io.write_json(paths.run_metrics("casia_face", "real", 0), face)
    io.write_json(paths.run_metrics("casia_face", "real", 1), {**face, "lfw": 0.92})
    io.write_json(paths.run_metrics("casia_face", "ghost", 0), face)  # not in params: ignored
    io.write_json(paths.generation_metrics("casia_face", "cold"), {"frechet": 3.0})
    collect.run(p, "casia_face")
    collect.run(p, "rfw_bias")
    cf = io.read_json(paths.benchmark_metrics("casia_face"))
    assert cf["variants"] == {"real": {"seed0": {"lfw": 0.9, "avg": 0.8},
                                       "seed1": {"lfw": 0.92, "avg": 0.8}}}
    assert cf["generation"] == {"cold": {"frechet": 3.0}}
    rfw = io.read_json(paths.benchmark_metrics("rfw_bias"))
    assert rfw["variants"]["real"]["seed1"] == {"African": 0.7, "mean": 0.75}
