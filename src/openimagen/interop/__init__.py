"""Other projects' checkpoints turned into openimagen model directories.

- :mod:`.deepfloyd_if`: DeepFloyd IF stages I and II (diffusers layout) -> a cascade whose
  stages run diffusers' own U-Net (:func:`import_deepfloyd_if`, ``openimagen import-if``).
"""

from openimagen.interop.deepfloyd_if import (
    IF_DEFAULT_SAMPLING,
    IFCheckpoint,
    import_deepfloyd_if,
    read_if_checkpoint,
)

__all__ = ["IF_DEFAULT_SAMPLING", "IFCheckpoint", "import_deepfloyd_if", "read_if_checkpoint"]
