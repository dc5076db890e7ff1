"""Training any stage of the cascade: config, trainer, checkpoints, EMA, logs, export.

``run_training(config, output_dir, resume=..., dry_run=...)`` is the entry point behind
``openimagen train``; ``export_stage`` turns a checkpoint into a model directory.
"""

from openimagen.train.config import TrainConfig, load_config
from openimagen.train.export import export_stage, load_ema_stage
from openimagen.train.parts import build_stage_config
from openimagen.train.trainer import TrainingDivergedError, TrainResult, run_training, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "build_stage_config",
    "export_stage",
    "load_config",
    "load_ema_stage",
    "run_training",
    "train",
]
