"""Other projects' checkpoints turned into openimagen model directories.

- :mod:`.deepfloyd_if`: DeepFloyd IF stages I and II (diffusers layout) -> a cascade whose
  stages run diffusers' own U-Net (:func:`import_deepfloyd_if`, ``openimagen import-if``);
  :mod:`.if_checkpoint` reads and checks one IF stage directory, :mod:`.if_text` its T5.
"""

from openimagen.interop.deepfloyd_if import (
    DTYPES,
    IF_DEFAULT_SAMPLING,
    IF_TEXT_MAX_LENGTH,
    import_deepfloyd_if,
)
from openimagen.interop.if_checkpoint import IFCheckpoint, read_if_checkpoint

__all__ = [
    "DTYPES",
    "IF_DEFAULT_SAMPLING",
    "IF_TEXT_MAX_LENGTH",
    "IFCheckpoint",
    "import_deepfloyd_if",
    "read_if_checkpoint",
]
