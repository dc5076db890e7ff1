"""One step's inputs: caption dropout, noise conditioning augmentation, per-sample randomness."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
)

from openimagen.cascade import StageConfig
from openimagen.data.sources import downsample
from openimagen.models import get_preset
from openimagen.train import load_config
from openimagen.train.step import micro_batch_loss, per_sample_generator


class Spy(torch.nn.Module):
    """Records what the trainer feeds the network; predicts 0.5 * x_t (per-sample only)."""

    def forward(self, x_t, t, text_embeds, text_mask, lowres=None, aug_level=None):
        self.seen = {"t": t, "mask": text_mask, "lowres": lowres, "aug": aug_level}
        return 0.5 * x_t


def sr_stage() -> StageConfig:
    unet = get_preset("tiny-sr")
    return StageConfig(
        unet=unet, resolution=unet.image_size, lowres_resolution=unet.image_size // 2
    )


def run(config, stage, images, first=0, dim=8):
    b = images.shape[0]
    gens = [per_sample_generator(0, first + i, 0) for i in range(b)]
    spy = Spy()
    mask = torch.ones(b, 5, dtype=torch.bool)
    losses = micro_batch_loss(spy, stage, config, images, torch.randn(b, 5, dim), mask, gens)
    return losses, spy.seen


def test_noise_augmentation_level_is_random_bounded_and_given_to_the_model():
    stage = sr_stage()
    r = stage.resolution
    images = torch.rand(16, 3, r, r) * 2 - 1
    clean = F.interpolate(
        downsample(images, stage.lowres_resolution), size=(r, r), mode="bicubic"
    ).clamp(-1, 1)
    no_aug = load_config(make_config(train={"max_aug_level": 0.0}))
    _, seen = run(no_aug, stage, images)
    assert torch.allclose(seen["lowres"], clean, atol=1e-6)
    assert torch.equal(seen["aug"], torch.zeros(16))

    config = load_config(make_config(train={"max_aug_level": 0.6}))
    _, seen = run(config, stage, images)
    aug = seen["aug"]
    assert aug.shape == (16,) and float(aug.min()) >= 0 and float(aug.max()) <= 0.6
    assert float(aug.std()) > 0.05  # one level per sample, not one per batch
    # the more augmentation, the further the low-res input is from the clean upsample
    deviation = (seen["lowres"] - clean).flatten(1).norm(dim=1)  # [16]
    order = aug.argsort()
    rank_corr = torch.corrcoef(torch.stack([order.argsort().float(),
                                            deviation.argsort().argsort().float()]))[0, 1]  # fmt: skip
    assert rank_corr > 0.8


def test_caption_dropout_masks_whole_captions_at_the_configured_rate():
    stage = StageConfig(unet=get_preset("tiny-base"), resolution=get_preset("tiny-base").image_size)
    images = torch.zeros(200, 3, 8, 8)
    for rate, low, high in ((0.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.3, 0.6, 0.8)):
        config = load_config(make_config(train={"text_dropout": rate}))
        _, seen = run(config, stage, images)
        kept = seen["mask"].all(dim=1).float()  # [B]
        assert bool(((seen["mask"].sum(1) == 0) | seen["mask"].all(1)).all())  # whole captions
        assert low <= float(kept.mean()) <= high, rate


def test_a_samples_loss_does_not_depend_on_its_batch():
    stage = StageConfig(unet=get_preset("tiny-base"), resolution=get_preset("tiny-base").image_size)
    config = load_config(make_config())
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    whole, _ = run(config, stage, images)
    head, _ = run(config, stage, images[:2])
    tail, _ = run(config, stage, images[2:], first=2)
    assert torch.equal(torch.cat([head, tail]), whole)
    other_seed = [per_sample_generator(1, i, 0) for i in range(4)]
    assert not torch.equal(
        torch.rand(4, generator=other_seed[0]),
        torch.rand(4, generator=per_sample_generator(0, 0, 0)),
    )


def test_text_embedder_stores_a_batchs_new_captions_as_one_shard(tmp_path, monkeypatch):
    import openimagen.text
    from cache_testutil import FakeEncoder, expected_row
    from openimagen.train.step import TextEmbedder

    encoders = [FakeEncoder(), FakeEncoder()]
    monkeypatch.setattr(openimagen.text, "load_text_encoder", lambda *a, **k: encoders.pop(0))
    config = load_config(make_config(text={"cache_dir": str(tmp_path / "cache")}))
    first_encoder, second_encoder = encoders
    captions = ["a red circle", "two blue squares", "a red circle", "one green star"]
    emb, mask = TextEmbedder(config, torch.device("cpu"))(captions)
    # each new caption encoded on its own (its embedding cannot depend on its batch) ...
    assert first_encoder.calls == [["a red circle"], ["two blue squares"], ["one green star"]]
    for i, caption in enumerate(captions):
        assert torch.equal(emb[i][mask[i]], expected_row(caption))
    # ... and the batch's new captions stored together: one shard, which a new run hits
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    again, again_mask = TextEmbedder(config, torch.device("cpu"))(captions)
    assert second_encoder.calls == [] and torch.equal(again, emb)
