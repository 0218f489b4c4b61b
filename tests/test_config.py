import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rgsyn import config
from rgsyn.cli import main
from rgsyn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_embedded_toy_profile():
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == config.to_dict(config.Params())


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_profiles_load_and_differ_from_toy(profile):
    merged = config.from_dict(config.profile_dict(profile))
    assert merged.profile == profile
    assert config.params_hash(merged) != config.params_hash(config.Params())


@pytest.mark.parametrize("raw, fragment", [
    ({"reid": {"epoch": 3}}, "unknown key 'reid.epoch' (did you mean 'epochs'?)"),
    ({"reid": {"epochs": "ten"}}, "reid.epochs: expected an integer, got 'ten'"),
    ({"reid": {"lr": 3.0}}, "reid.lr: value 3.0 is out of range; allowed [0.0, 1.0]"),
    ({"profile": "huge"}, "profile: value 'huge' is not allowed; choose one of ['toy', 'smoke', 'paper']"),
    ({"syn_variants": {"x": {"synthetic": "rl-nope"}}}, "syn_variants.x.synthetic: value 'rl-nope'"),
    ({"seeds": []}, "seeds: expected at least one seed"),
    ({"data": {"faces": {"size": True}}}, "data.faces.size: expected an integer, got True"),
])
def test_bad_params_name_the_key(raw, fragment):
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert fragment in str(e.value)


def test_variant_resolution():
    p = config.Params()
    assert p.variant("real").synthetic == "none"
    assert p.variant("real_re").random_erasing is True
    ours = p.variant("ours")
    assert (ours.synthetic, ours.selection) == ("rl-full", "lookahead")
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        p.variant("nope")


def test_typo_in_params_file_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("reid:\n  epohcs: 3\n")
    assert main(["collect", "--benchmark", "market1501", "--params", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'reid.epohcs'" in err and "epochs" in err


def test_cli_typo_has_no_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seeds: [0]\nrl:\n  lr: -1\n")
    out = subprocess.run([sys.executable, "-m", "rgsyn.cli", "collect", "--benchmark", "cuhk03",
                          "--params", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "rl.lr: value -1.0 is out of range" in out.stderr


def test_params_command_writes_profile(tmp_path):
    out = tmp_path / "p.yaml"
    assert main(["params", "--profile", "smoke", "--out", str(out)]) == 0
    assert config.load(out).profile == "smoke"


def test_overlay_replaces_row_mappings_and_merges_sections():
    smoke = config.from_dict(config.profile_dict("smoke"))
    assert list(smoke.rl.reward_variants) == ["full"]          # replaced, not merged
    assert smoke.generators() == ["cold", "rl-full", "oracle"]
    assert smoke.rl.lr == config.Params().rl.lr                 # untouched keys keep toy values
    assert smoke.data.cuhk03.n_cams == 2 and smoke.data.cuhk03.n_train_ids == 16
