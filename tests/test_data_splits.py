"""The one training split: every caller's answer to "which real images train benchmark B" agrees."""
import pytest

from rgsyn.data.splits import label_map, training_split
from rgsyn.errors import DataError
from test_downstream_training import build_tiny_world, tiny_params


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    return tiny_params(build_tiny_world(tmp_path_factory.mktemp("world")))


def test_training_splits_of_the_tiny_world(params):
    market, cuhk, casia = (training_split(params, b) for b in ("market1501", "cuhk03", "casia_face"))
    # the world's sizes (tiny_params): 8 ids x 3 cameras x 1 image; 8 x 2 x 2; 8 x 4
    assert (len(market), len(set(market.identities))) == (24, 8)
    assert (len(cuhk), len(set(cuhk.identities))) == (32, 8)
    assert (len(casia), len(set(casia.identities))) == (32, 8)
    assert all("bounding_box_train" in p for p in market.paths + cuhk.paths)
    assert all(isinstance(k, int) for k in market.identities) and all(isinstance(k, str) for k in casia.identities)
    lm = casia.label_map()
    assert sorted(lm.values()) == list(range(8)) and list(lm) == sorted(lm)


def test_every_caller_uses_the_split(params):
    from rgsyn.estimate import dataset_sizes
    from rgsyn.generator.datasets import benchmark_real_paths
    from rgsyn.rl.encoders import identity_image_paths

    split = training_split(params, "cuhk03")
    assert benchmark_real_paths(params, "cuhk03") == (split.paths, split.identities)
    assert dataset_sizes(params)["cuhk03"] == {"ids": 8, "images": 32, "source": "counted"}
    pid = split.identities[0]
    rows = [{"row": 0, "benchmark": "cuhk03", "label": pid}]
    assert identity_image_paths(params, "persons", rows) == [sorted(p for p, k in zip(split.paths, split.identities)
                                                                     if k == pid)]


def test_label_map_and_bad_benchmark(params):
    assert label_map([5, 2, 5, 9]) == {2: 0, 5: 1, 9: 2}
    with pytest.raises(DataError, match="rfw_bias.*no training split"):
        training_split(params, "rfw_bias")
