"""Randomly initialised FID and CLIP networks saved in each library's own file format.

A user's real weights take the same code path: torch-fidelity reads its InceptionV3 file
with ``torch.load`` (a state dict), open_clip reads a checkpoint given as ``pretrained=PATH``
(here a .safetensors file) for an architecture named by a config JSON. Only the evaluation
environment (make eval-env) can import either library.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

# a small open_clip architecture: 32x32 images, 2 layers per tower (open_clip's config format)
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 with random weights, saved where its loader reads them.

    Kaiming-normal convolutions and jittered batch norms keep the activations of the 90-odd
    layers at unit scale, so the 2048-d pool features are far from zero and differ by image.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    module = "torch_fidelity.feature_extractor_inceptionv3"
    with (
        mock.patch(f"{module}.load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None),
    ):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.weight.mul_((2.0 / fan_in) ** 0.5)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                n = layer.num_features
                layer.weight.copy_(0.5 + torch.rand(n, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(n, generator=generator))
    torch.save(net.state_dict(), path)
    return path


def tiny_clip(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """(config .json, .safetensors checkpoint) of a randomly initialised small open_clip model."""
    import open_clip
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openimagen-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP), encoding="utf-8")
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(config.stem)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    checkpoint = directory / "tiny-clip.safetensors"
    save_file(state, str(checkpoint))
    return config, checkpoint


def picture_folder(directory: Path, count: int, seed: int, size: int = 256) -> list[Path]:
    """``count`` PNG pictures: smooth random colour fields with a random bright square."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        x, y, s = (int(v) for v in rng.integers(0, size // 2, size=3))
        pixels = np.asarray(image).copy()
        pixels[y : y + s + 8, x : x + s + 8] = rng.integers(128, 256, size=3)
        paths.append(directory / f"{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def open_clip_cosines(config: Path, checkpoint: Path, paths, captions) -> torch.Tensor:
    """cos(image, caption) per pair [n], from open_clip's own calls on the whole set at once."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(
        config.stem, pretrained=str(checkpoint)
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(config.stem)
    pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])  # [n, 3, S, S]
    with torch.no_grad():
        image = model.encode_image(pixels, normalize=True)  # [n, D]
        text = model.encode_text(tokenizer(list(captions)), normalize=True)  # [n, D]
    return (image * text).sum(dim=-1)  # [n]


def torch_fidelity_fid(generated: Path, reference: Path, weights: Path) -> float:
    """torch-fidelity's own FID call on two folders, at its defaults but for the weights file."""
    import torch_fidelity

    metrics = torch_fidelity.calculate_metrics(
        input1=str(generated), input2=str(reference), fid=True, cuda=False, verbose=False,
        feature_extractor_weights_path=str(weights),
    )  # fmt: skip
    return float(metrics["frechet_inception_distance"])
