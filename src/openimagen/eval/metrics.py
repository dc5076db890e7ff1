"""FID through torch-fidelity and CLIP score through open_clip, from the user's local weights.

Both libraries need torchvision, which PyPI builds only beside its own torch; openimagen's
default environment (the CPU torch 2.13.0) cannot import it. They are therefore imported
here lazily, and :func:`require_eval_packages` turns their absence into one line that says
how to make the evaluation environment (``make eval-env``, docs/evaluation.md).

* **FID** (Heusel et al., 2017) is torch-fidelity's: its ``inception-v3-compat`` extractor
  (the TensorFlow FID graph of Heusel et al., with TensorFlow's bilinear resize to 299x299
  inside), the 2048-d pool features (``feature_layer_fid="2048"``), its Frechet formula, on
  two folders of PNG files; the weights are the file torch-fidelity itself downloads
  (``weights-inception-2015-12-05-6726825d.pth``), given by path. openimagen's own Frechet
  formula (:mod:`openimagen.eval.frechet`) serves only the shapes-world feature space.
* **CLIP score** (Hessel et al., 2021, with w = 100 as torchmetrics scales it): the mean
  over image-caption pairs of ``100 * max(cos(E_I(image), E_T(caption)), 0)``, with an
  open_clip model built from its name (or a config JSON) and a local checkpoint, each image
  through the model's own preprocessing and each caption through its own tokenizer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openimagen.errors import InvalidArgumentError, MissingDependencyError, OpenImagenError

logger = logging.getLogger(__name__)

#: torch-fidelity's name of the InceptionV3 weights file (its URL_INCEPTION_V3 release asset)
INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
FID_FEATURE_EXTRACTOR = "inception-v3-compat"
FID_FEATURE_LAYER = "2048"
CLIP_SCORE_SCALE = 100.0
EVAL_ENV_FIX = (
    "Make the evaluation environment with `make eval-env` and run .venv-eval/bin/openimagen "
    "(on a machine with PyPI's CUDA torch: pip install 'openimagen[eval]'); docs/evaluation.md."
)


def _missing(package: str, exc: BaseException) -> MissingDependencyError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return MissingDependencyError(
        "FID and CLIP score need torch-fidelity and open_clip_torch (with torchvision), which "
        f"cannot be imported here ({package}: {reason}). {EVAL_ENV_FIX}"
    )


def require_eval_packages() -> dict[str, Any]:
    """Import torch-fidelity and open_clip, or raise one error saying how to get them.

    The only imports of either library in openimagen (a contract in .importlinter).
    """
    # ImportError, or torchvision's RuntimeError ("operator torchvision::nms does not exist")
    # when it sits beside a torch it was not built for
    try:
        import torch_fidelity
    except Exception as exc:
        raise _missing("torch-fidelity", exc) from exc
    try:
        import open_clip
    except Exception as exc:
        raise _missing("open_clip_torch", exc) from exc
    return {"torch-fidelity": torch_fidelity, "open_clip_torch": open_clip}


def library_versions() -> dict[str, str]:
    """The versions of the packages the numbers depend on."""
    import torch

    modules = require_eval_packages()
    return {
        "torch": torch.__version__,
        "torch-fidelity": modules["torch-fidelity"].__version__,
        "open_clip": modules["open_clip_torch"].__version__,
    }


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 16 MiB blocks (weights files are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def check_file(option: str, path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` as a Path if it is an existing file; else an error naming ``option``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(option, str(path), f"an existing file: {what}", fix)
    return path


# -- FID -----------------------------------------------------------------------------------------
def check_inception_weights(path: str | os.PathLike) -> Path:
    """Refuse anything but a plain tensor state dict before torch-fidelity unpickles it.

    torch-fidelity opens the file with ``torch.load(weights_only=False)``, which would run
    code hidden in a foreign pickle; opening it here with ``weights_only=True`` first refuses
    such a file, and one that is not InceptionV3's state dict, with a clear message.
    """
    import torch

    path = check_file(
        "--inception-weights", path, f"torch-fidelity's InceptionV3 weights ({INCEPTION_WEIGHTS_NAME})",
        "openimagen never downloads weights: fetch the file (docs/evaluation.md) and pass its path.",
    )  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidArgumentError(
            "--inception-weights", str(path), "a PyTorch state dict of tensors (torch-fidelity's "
            f"{INCEPTION_WEIGHTS_NAME})", f"Loading it with weights_only=True failed: {exc}",
        ) from exc  # fmt: skip
    keys = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")
    if not isinstance(state, dict) or not all(k in state for k in keys):
        raise InvalidArgumentError(
            "--inception-weights", str(path),
            f"torch-fidelity's InceptionV3 state dict (keys such as {keys[0]})",
            f"This file holds something else; pass {INCEPTION_WEIGHTS_NAME}.",
        )  # fmt: skip
    return path


def frechet_inception_distance(
    generated_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    inception_weights: str | os.PathLike,
    *,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> float:
    """FID between the PNG files of two folders: ``torch_fidelity.calculate_metrics``.

    The extractor, layer and weights are named explicitly (the library's defaults for FID
    are the same), nothing is cached, and the weights come from ``inception_weights`` only.
    """
    import torch

    from openimagen.device import resolve_device

    for option, folder in (("generated_dir", generated_dir), ("reference_dir", reference_dir)):
        count = sum(1 for _ in Path(folder).glob("*.png")) if Path(folder).is_dir() else 0
        if count < 2:
            raise InvalidArgumentError(
                option, str(folder), "a folder with at least 2 PNG files",
                f"It has {count}; FID needs the covariance of each image set.",
            )  # fmt: skip
    torch_fidelity = require_eval_packages()["torch-fidelity"]
    weights = check_inception_weights(inception_weights)
    resolved = resolve_device(device)
    cuda = resolved.type == "cuda"
    kwargs = {
        "input1": str(generated_dir),
        "input2": str(reference_dir),
        "fid": True,
        "feature_extractor": FID_FEATURE_EXTRACTOR,
        "feature_layer_fid": FID_FEATURE_LAYER,
        "feature_extractor_weights_path": str(weights),
        "samples_find_ext": "png",
        "cache": False,
        "cuda": cuda,
        "batch_size": batch_size,
        # the CPU keeps its cores for the network; a GPU is fed by worker processes
        "save_cpu_ram": not cuda,
        "verbose": progress,
    }
    # torch-fidelity puts its extractor on the current CUDA device
    try:
        with torch.cuda.device(resolved) if cuda else contextlib.nullcontext():
            metrics = torch_fidelity.calculate_metrics(**kwargs)
    except ValueError as exc:  # torch-fidelity's checks of its inputs (`vassert`)
        raise OpenImagenError(f"torch-fidelity could not compute FID: {exc}") from exc
    return float(metrics["frechet_inception_distance"])


# -- CLIP score ----------------------------------------------------------------------------------
def resolve_clip_model(name: str) -> str:
    """An open_clip architecture name; a path to a config ``.json`` registers that config.

    open_clip names a config file's architecture by the file's stem (``tiny.json`` -> ``tiny``).
    """
    open_clip = require_eval_packages()["open_clip_torch"]
    if name.endswith(".json"):
        path = check_file(
            "--clip-model", name, "an open_clip model config (embed_dim, vision_cfg, text_cfg)",
            "Pass an architecture name (e.g. ViT-L-14-quickgelu) or the path of a config JSON.",
        )  # fmt: skip
        open_clip.add_model_config(path)
        name = path.stem
    if name not in open_clip.list_models():
        raise InvalidArgumentError(
            "--clip-model", name, "an open_clip architecture (open_clip.list_models()) or a "
            "config .json", "ViT-L-14-quickgelu goes with OpenAI's ViT-L/14 weights.",
        )  # fmt: skip
    return name


def load_clip(
    model: str, checkpoint: str | os.PathLike, device: str | None = None
) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) of open_clip from a local checkpoint; never downloads."""
    from openimagen.device import resolve_device

    open_clip = require_eval_packages()["open_clip_torch"]
    name = resolve_clip_model(model)
    path = check_file(
        "--clip-checkpoint", checkpoint, "an open_clip checkpoint (.safetensors, .bin or .pt)",
        "openimagen never downloads weights: fetch the file (docs/evaluation.md) and pass its path.",
    )  # fmt: skip
    resolved = resolve_device(device)
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path), device=resolved
        )
    except Exception as exc:  # a checkpoint of another architecture, a damaged file
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InvalidArgumentError(
            "--clip-checkpoint", str(path), f"weights of the open_clip architecture {name}",
            f"open_clip could not load them ({reason}); check --clip-model.",
        ) from exc  # fmt: skip
    return net.eval(), preprocess, open_clip.get_tokenizer(name)


def clip_score(
    image_paths: Sequence[str | os.PathLike],
    captions: Sequence[str],
    *,
    model: str,
    checkpoint: str | os.PathLike,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> float:
    """``100 * mean(max(cos(image, caption), 0))`` over the pairs (module docstring)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from tqdm.auto import tqdm

    if len(image_paths) != len(captions) or not captions:
        raise InvalidArgumentError(
            "captions", len(captions), f"one caption per image ({len(image_paths)} images, >= 1)"
        )
    net, preprocess, tokenizer = load_clip(model, checkpoint, device)
    device_ = next(net.parameters()).device
    total, count = 0.0, 0
    bar = tqdm(total=len(captions), unit="image", desc="CLIP score", disable=not progress)
    for start in range(0, len(captions), batch_size):
        paths = image_paths[start : start + batch_size]
        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(preprocess(image.convert("RGB")))
        pixels = torch.stack(images).to(device_)  # [n, 3, S, S]
        tokens = tokenizer(list(captions[start : start + batch_size])).to(device_)  # [n, L]
        with torch.inference_mode():
            image_emb = F.normalize(net.encode_image(pixels).float(), dim=-1)  # [n, D]
            text_emb = F.normalize(net.encode_text(tokens).float(), dim=-1)  # [n, D]
        cosine = (image_emb * text_emb).sum(dim=-1).double()  # [n]
        total += float((CLIP_SCORE_SCALE * cosine.clamp_min(0)).sum())
        count += len(paths)
        bar.update(len(paths))
    bar.close()
    return total / count


__all__ = [
    "CLIP_SCORE_SCALE",
    "EVAL_ENV_FIX",
    "FID_FEATURE_EXTRACTOR",
    "FID_FEATURE_LAYER",
    "INCEPTION_WEIGHTS_NAME",
    "check_file",
    "check_inception_weights",
    "clip_score",
    "frechet_inception_distance",
    "library_versions",
    "load_clip",
    "require_eval_packages",
    "resolve_clip_model",
    "sha256_file",
]
