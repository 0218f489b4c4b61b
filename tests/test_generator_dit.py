"""DiT build/load/save, identity head swap, LoRA bundles and checkpoint errors (tiny models)."""
from __future__ import annotations

import json

import pytest
import torch

from rgsyn.config import DiTArch, LoraParams
from rgsyn.errors import CheckpointError
from rgsyn.generator import architecture, bundle, identity_head, lora
from rgsyn.generator.autoencoder import PixelAutoencoder, VaeAutoencoder

TINY = DiTArch(sample_size=8, patch_size=2, in_channels=3, num_layers=2, num_attention_heads=2,
               attention_head_dim=8, num_classes=5)


def tiny_bundle(seed: int = 0, n_classes: int = 5) -> bundle.GeneratorBundle:
    torch.manual_seed(seed)
    from dataclasses import replace

    t = architecture.build_dit(replace(TINY, num_classes=n_classes))
    # random non-zero adaLN weights (diffusers zero-inits them; then every output would be 0)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return bundle.GeneratorBundle(t, architecture.build_scheduler(100), PixelAutoencoder())


def identity_bundle(seed: int = 0, n_ids: int = 4) -> bundle.GeneratorBundle:
    """`tiny_bundle` with an identity head of `n_ids` random rows (a cold start), in eval mode."""
    b = tiny_bundle(seed=seed)
    identity_head.swap_identity_head(b.transformer, n_ids)
    with torch.no_grad():
        for e in identity_head.label_embedders(b.transformer):
            e.embedding_table.weight.normal_()
    b.transformer.eval()
    return b


def out(transformer, labels, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 8, 8, generator=g).expand(len(labels), -1, -1, -1)
    with torch.no_grad():
        return transformer(x, timestep=torch.full((len(labels),), 50), class_labels=labels).sample


def test_identity_head_swap_zero_rows_every_block_and_null_copied():
    b = tiny_bundle()
    old_null = [e.embedding_table.weight[5].clone() for e in identity_head.label_embedders(b.transformer)]
    identity_head.swap_identity_head(b.transformer, 7)
    embs = identity_head.label_embedders(b.transformer)
    assert len(embs) == TINY.num_layers
    for e, null in zip(embs, old_null):
        assert e.embedding_table.weight.shape == (8, TINY.num_attention_heads * TINY.attention_head_dim)
        assert torch.count_nonzero(e.embedding_table.weight[:7]) == 0
        assert torch.equal(e.embedding_table.weight[7], null)
    assert identity_head.num_labels(b.transformer) == 7 and identity_head.null_label(b.transformer) == 7
    assert b.transformer.config.num_embeds_ada_norm == 7
    # all identities give the same output at init (zero rows), the null row differs
    o = out(b.transformer, torch.tensor([0, 3, 6, 7]))
    assert torch.allclose(o[0], o[1]) and torch.allclose(o[0], o[2])
    assert not torch.allclose(o[0], o[3])


def test_freeze_backbone_trains_only_the_head():
    b = tiny_bundle()
    identity_head.swap_identity_head(b.transformer, 4)
    trainable = identity_head.freeze_backbone(b.transformer)
    names = [n for n, p in b.transformer.named_parameters() if p.requires_grad]
    assert len(trainable) == TINY.num_layers == len(names)
    assert all(n.endswith("class_embedder.embedding_table.weight") for n in names)


def test_save_load_roundtrip_same_outputs(tmp_path):
    b = tiny_bundle()
    identity_head.swap_identity_head(b.transformer, 3)
    with torch.no_grad():
        for e in identity_head.label_embedders(b.transformer):
            e.embedding_table.weight.normal_()
    b.identities = [{"row": i, "benchmark": "market1501", "label": 10 + i} for i in range(3)]
    bundle.save_generator(b, tmp_path / "gen")
    assert (tmp_path / "gen" / "transformer" / bundle.WEIGHTS_NAME).is_file()
    assert not list(tmp_path.glob(".gen.tmp-*"))
    loaded = bundle.load_generator(tmp_path / "gen")
    assert loaded.identities == b.identities
    assert loaded.image_size == 8
    y = torch.tensor([0, 1, 2, 3])
    assert torch.equal(out(b.transformer, y), out(loaded.transformer, y))
    assert loaded.scheduler.config.set_alpha_to_one is False
    # the same bytes give the same hash; another identity list does not
    h = bundle.checkpoint_sha256(tmp_path / "gen")
    assert h == bundle.checkpoint_sha256(tmp_path / "gen")
    ids = json.loads((tmp_path / "gen" / "identities.json").read_text())
    ids[0]["label"] = 99
    (tmp_path / "gen" / "identities.json").write_text(json.dumps(ids))
    assert bundle.checkpoint_sha256(tmp_path / "gen") != h


@pytest.mark.parametrize("how", ["add_lora", "inject"])
def test_lora_bundle_keeps_base_and_adapter(tmp_path, how):
    b = tiny_bundle()
    identity_head.swap_identity_head(b.transformer, 3)
    base_out = out(b.transformer, torch.tensor([0, 1]))
    bundle.save_generator(b, tmp_path / "cold")
    lp = LoraParams(rank=2, alpha=2.0)
    if how == "add_lora":
        lora.attach_lora(b.transformer, lp)
    else:
        from peft import LoraConfig, inject_adapter_in_model

        inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2.0, target_modules=list(lp.target_modules)),
                                b.transformer, adapter_name="default")
    with torch.no_grad():
        for n, p in b.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    lora_out = out(b.transformer, torch.tensor([0, 1]))
    assert not torch.allclose(lora_out, base_out)
    bundle.save_generator(b, tmp_path / "rl")
    assert (tmp_path / "rl" / "lora" / lora.LORA_WEIGHTS).is_file()
    # base weights are saved unmerged: identical to the cold-start bundle
    from safetensors.torch import load_file

    cold = load_file(str(tmp_path / "cold" / "transformer" / bundle.WEIGHTS_NAME))
    rl = load_file(str(tmp_path / "rl" / "transformer" / bundle.WEIGHTS_NAME))
    assert cold.keys() == rl.keys() and all(torch.equal(cold[k], rl[k]) for k in cold)
    loaded = bundle.load_generator(tmp_path / "rl")
    assert lora.has_lora(loaded.transformer)
    assert torch.allclose(out(loaded.transformer, torch.tensor([0, 1])), lora_out, atol=1e-6)
    lora.set_lora_enabled(loaded.transformer, False)
    assert torch.allclose(out(loaded.transformer, torch.tensor([0, 1])), base_out, atol=1e-6)


def test_merge_lora_folds_adapter(tmp_path):
    b = tiny_bundle()
    lora.attach_lora(b.transformer, LoraParams(rank=2, alpha=2.0))
    with torch.no_grad():
        for n, p in b.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    y = torch.tensor([0, 4])
    before = out(b.transformer, y)
    lora.merge_lora(b.transformer)
    assert not lora.has_lora(b.transformer)
    assert torch.allclose(out(b.transformer, y), before, atol=1e-5)


def test_missing_bundle_and_incompatible_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not a generator bundle"):
        bundle.load_generator(tmp_path / "nothing")
    b = tiny_bundle()
    b.transformer.save_pretrained(tmp_path / "dit" / "transformer")
    with pytest.raises(CheckpointError, match="in_channels=4"):
        architecture.load_transformer(tmp_path / "dit", in_channels=4)
    with pytest.raises(CheckpointError, match="sample_size=16"):
        architecture.load_transformer(tmp_path / "dit", in_channels=3, sample_size=16)
    with pytest.raises(CheckpointError, match="expected 1000"):
        architecture.load_transformer(tmp_path / "dit", n_labels=1000)
    with pytest.raises(CheckpointError, match="no config.json"):
        architecture.load_transformer(tmp_path / "empty_dir_that_exists" if (tmp_path / "empty_dir_that_exists").mkdir()
                             is None else None)
    # a label embedder that is gone
    t = architecture.load_transformer(tmp_path / "dit")
    del t.transformer_blocks[1].norm1.emb.class_embedder
    with pytest.raises(CheckpointError, match="class-label embedder"):
        architecture.check_transformer(t)
    # a bundle whose identities.json disagrees with the label rows
    b.identities = [{"row": 0, "benchmark": "x", "label": 1}]
    bundle.save_generator(b, tmp_path / "bad")
    with pytest.raises(CheckpointError, match="lists 1 identities but the DiT has 5"):
        bundle.load_generator(tmp_path / "bad")


def test_pickle_weights_are_not_loaded(tmp_path):
    """Only safetensors are read: a folder with a pickled .bin checkpoint is refused."""
    b = tiny_bundle()
    b.transformer.save_pretrained(tmp_path / "dit" / "transformer", safe_serialization=False)
    with pytest.raises(CheckpointError, match="cannot load the DiT"):
        architecture.load_transformer(tmp_path / "dit")


def test_vae_autoencoder_local_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8),
                        latent_channels=4, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(tmp_path / "vae")
    from rgsyn.generator.autoencoder import build_autoencoder

    ae = build_autoencoder(str(tmp_path / "vae"))
    assert isinstance(ae, VaeAutoencoder) and ae.downscale == 2 and ae.latent_channels == 4
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = ae.encode(x)
        assert z.shape == (2, 4, 8, 8)
        assert ae.decode(z).shape == (2, 3, 16, 16)
    with pytest.raises(CheckpointError, match="cannot load the VAE"):
        build_autoencoder(str(tmp_path / "missing" / "vae"))


def test_build_dit_uses_dit_adaln_zero_init():
    """A fresh toy DiT starts as DiT does: output 0 (adaLN-Zero) and N(0, 0.02) label rows, so the
    zero identity rows of the cold start lie among the class rows the prior was trained with (with
    PyTorch's N(0, 1) rows they were far outside, and cold-start samples were patch noise)."""
    torch.manual_seed(0)
    t = architecture.build_dit(TINY)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = t(x, timestep=torch.tensor([3, 70]), class_labels=torch.tensor([0, 5])).sample
    assert torch.equal(y, torch.zeros_like(y))
    for emb in identity_head.label_embedders(t):
        rows = emb.embedding_table.weight
        assert float(rows.std()) < 0.05
    emb = identity_head.label_embedders(t)[0]
    assert float(emb.embedding_table.weight.norm(dim=1).max()) < 0.5
    block0 = t.transformer_blocks[0]
    assert torch.count_nonzero(block0.norm1.linear.weight) == 0


def test_denoising_loop_keeps_last_iterate_by_default():
    """No weight EMA by default: over a few hundred toy steps the EMA of fast-moving weights was a
    worse denoiser than the last iterate (its samples were per-patch noise)."""
    from rgsyn.generator.datasets import ImageSet
    from rgsyn.generator.training import train_denoising

    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (6, 3, 8, 8), generator=g, dtype=torch.uint8),
                    torch.tensor([0, 1, 2, 3, 4, 0]), [], [])

    def trained(**kw):
        b = tiny_bundle()
        train_denoising(transformer=b.transformer, trainable=list(b.transformer.parameters()), data=data,
                        autoencoder=b.autoencoder, scheduler=b.scheduler, steps=3, batch_size=4, lr=1e-2,
                        seed=0, null_label=5, checkpointer=None, checkpoint_every=100, device="cpu", **kw)
        return torch.cat([p.detach().flatten() for p in b.transformer.parameters()])

    default, last, ema = trained(), trained(ema_decay=0.0), trained(ema_decay=0.995)
    assert torch.equal(default, last)
    assert not torch.allclose(default, ema)
