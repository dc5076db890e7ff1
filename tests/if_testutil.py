"""Tiny DeepFloyd IF checkpoints with random weights, saved in the diffusers pipeline layout.

The U-Nets are diffusers' UNet2DConditionModel with IF's block types (ResNet down/up blocks,
SimpleCrossAttn blocks with group-normed cross-attention, attention pooling of the text
into the time embedding, encoder_hid_dim projecting T5's width in; stage II with
class_embed_type "timestep" for its noise level), sized as diffusers' own IF pipeline tests
size them; the scheduler configs are IF's (1000 steps of squaredcos_cap_v2, epsilon,
learned_range, dynamic thresholding 0.95 with max 1.5 / 1.0). The T5 is a tiny random
T5EncoderModel with a Unigram tokenizer made from a word list. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = [
    *("a", "red", "blue", "green", "yellow", "circle", "square", "triangle", "two", "three"),
    *("on", "the", "left", "right", "of", "above", "below", "and", "big", "small"),
]
VOCAB = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
T5_DIM = 32
BASE_RES, SR_RES = 16, 32
LICENSE_TEXT = "DEEPFLOYD IF LICENSE AGREEMENT (test copy)\n"


def tiny_t5(seed: int = 0, *, d_model: int = T5_DIM):
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(VOCAB), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        pad_token_id=0, eos_token_id=1, is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    return T5EncoderModel(config).eval(), T5Tokenizer(vocab=VOCAB, extra_ids=0)


def if_unet(stage: int, *, seed: int, text_dim: int = T5_DIM):
    """An IF-shaped U-Net: diffusers' test components for IF, at our tiny sizes."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    common = dict(
        block_out_channels=[32, 64],
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        out_channels=6,
        cross_attention_dim=32,
        encoder_hid_dim=text_dim,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
    if stage == 1:
        return UNet2DConditionModel(sample_size=BASE_RES, layers_per_block=1, in_channels=3,
                                    **common)  # fmt: skip
    return UNet2DConditionModel(
        sample_size=SR_RES, layers_per_block=[1, 2], in_channels=6, class_embed_type="timestep",
        mid_block_scale_factor=1.414, time_embedding_act_fn="gelu", time_embedding_dim=32,
        **common,
    )  # fmt: skip


def if_scheduler(sample_max_value: float):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
        beta_end=0.02, thresholding=True, dynamic_thresholding_ratio=0.95,
        sample_max_value=sample_max_value, prediction_type="epsilon",
        variance_type="learned_range",
    )  # fmt: skip


def save_if_stage(directory: Path, stage: int, *, seed: int = 0, text_seed: int = 0,
                  text_dim: int = T5_DIM, with_text: bool = True) -> Path:  # fmt: skip
    """Write one tiny IF stage in the diffusers layout (with a LICENSE and a README.md)."""
    text_encoder, tokenizer = tiny_t5(text_seed, d_model=text_dim)
    if not with_text:
        text_encoder = tokenizer = None
    unet = if_unet(stage, seed=seed, text_dim=text_dim)
    return write_if_stage(directory, stage, unet=unet, text_encoder=text_encoder,
                          tokenizer=tokenizer)  # fmt: skip


def write_if_stage(directory: Path, stage: int, *, unet, text_encoder, tokenizer) -> Path:
    """Save ``unet`` (and the T5 and tokenizer, either may be None) as IF stage ``stage`` in
    the diffusers layout, with IF's schedulers, a LICENSE and a README.md. Any size: the
    real-size checkpoints of benchmarks/if_memory.py are written here too."""
    from diffusers import DDPMScheduler, IFPipeline, IFSuperResolutionPipeline

    parts = dict(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
        scheduler=if_scheduler(1.5 if stage == 1 else 1.0),
        safety_checker=None, feature_extractor=None, watermarker=None,
        requires_safety_checker=False,
    )  # fmt: skip
    if stage == 1:
        pipe = IFPipeline(**parts)
    else:
        noising = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                beta_start=0.0001, beta_end=0.02)  # fmt: skip
        pipe = IFSuperResolutionPipeline(**parts, image_noising_scheduler=noising)
    pipe.save_pretrained(directory, safe_serialization=True)
    (directory / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
    (directory / "README.md").write_text(f"# IF stage {stage} (random weights)\n", encoding="utf-8")
    return directory


def tiny_if_checkpoints(root: Path) -> tuple[Path, Path]:
    """Stage I (16x16) and stage II (16 -> 32) checkpoints sharing one tiny T5."""
    return save_if_stage(root / "IF-I-tiny", 1, seed=1), save_if_stage(root / "IF-II-tiny", 2, seed=2)


def if_train_config(model: Path, stage: str = "stage0_base16", resolution: int = 16,
                    lowres: int | None = None, *, lr: float = 1e-4, **train) -> dict:  # fmt: skip
    """A train config that fine-tunes stage ``stage`` of the imported IF model ``model`` (its
    network and schedule as they are, its T5 with IF's conditioning) on the shapes world; two
    steps of batch 2 unless ``train`` says otherwise."""
    stage_section = {"preset": "init_from", "resolution": resolution}
    if lowres is not None:
        stage_section["lowres_resolution"] = lowres
    return {
        "stage": stage_section,
        "text": {"encoder": str(model / "text_encoder"), "max_length": 77,
                 "conditioning": "deepfloyd-if"},
        "data": {"source": "shapes", "seed": 3},
        "optim": {"name": "adamw", "lr": lr, "warmup_steps": 1, "weight_decay": 0.0},
        "train": {"steps": 2, "batch_size": 2, "device": "cpu", "seed": 7, "ema_decay": 0.5,
                  "checkpoint_every": 2, "init_from": str(model / stage), **train},
        "log": {"every": 1, "progress": False, "tensorboard": False, "sample_every": 0},
    }  # fmt: skip


def load_pipelines(stage1: Path, stage2: Path):
    """diffusers' own IF pipelines, loaded from the same directories."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    off = dict(safety_checker=None, feature_extractor=None, watermarker=None,
               requires_safety_checker=False)  # fmt: skip
    first = IFPipeline.from_pretrained(stage1, **off)
    second = IFSuperResolutionPipeline.from_pretrained(stage2, **off)
    for pipe in (first, second):
        pipe.set_progress_bar_config(disable=True)
    return first, second


def model_index(directory: Path) -> dict:
    return json.loads((directory / "model_index.json").read_text(encoding="utf-8"))
