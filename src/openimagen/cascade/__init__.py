"""Stages and cascades: where text encoders, U-Nets and diffusion meet.

- :mod:`.sampling`: :class:`SamplingConfig`, the one source of sampler / thresholding names
  and of every sampling setting's limits;
- :mod:`.schema`: the files of a model directory and the configs they hold;
- :mod:`.modeldir`: reading and writing model directories (no text encoder needed);
- :mod:`.stage`: :class:`Stage`, one U-Net and how it samples;
- :mod:`.pipeline`: :class:`Cascade`, the text encoder and the stages sampled in order.

The names below are imported on first use (:mod:`openimagen.lazy`): the command line reads
:mod:`.sampling` without loading torch.
"""

from typing import TYPE_CHECKING

from openimagen.lazy import lazy_exports

if TYPE_CHECKING:
    from openimagen.cascade.modeldir import (
        build_cascade_config,
        load_stage_weights,
        put_stage,
        read_cascade_config,
        read_stage_config,
        resolve_text_encoder_name,
        save_stage,
        write_model_directory,
        write_stage_directory,
    )
    from openimagen.cascade.pipeline import Cascade
    from openimagen.cascade.sampling import (
        CHOICES,
        LIMITS,
        MAX_SEED,
        PRECISIONS,
        SAMPLER_NAMES,
        THRESHOLD_KINDS,
        Limit,
        SamplingConfig,
        one_of,
    )
    from openimagen.cascade.schema import (
        CARD_FILE,
        CASCADE_FILE,
        CONFIG_FILE,
        DIFFUSERS_STAGE_FORMAT_NAME,
        EVALUATION_FILE,
        FORMAT_NAME,
        FORMAT_VERSION,
        LATEST_FORMAT_VERSION,
        STAGE_FORMAT_NAME,
        TEXT_CONDITIONINGS,
        TRAINING_FILE,
        UPSTREAM_DIR,
        WEIGHTS_FILE,
        AnyStageConfig,
        CascadeConfig,
        DiffusersStageConfig,
        StageConfig,
        StageEntry,
        cascade_version,
        check_stages,
        parse_stage_config,
        stage_dir_name,
    )
    from openimagen.cascade.stage import ProgressFn, Stage

__all__ = [
    "CARD_FILE",
    "CASCADE_FILE",
    "CHOICES",
    "CONFIG_FILE",
    "DIFFUSERS_STAGE_FORMAT_NAME",
    "EVALUATION_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LATEST_FORMAT_VERSION",
    "LIMITS",
    "MAX_SEED",
    "PRECISIONS",
    "SAMPLER_NAMES",
    "STAGE_FORMAT_NAME",
    "TEXT_CONDITIONINGS",
    "THRESHOLD_KINDS",
    "TRAINING_FILE",
    "UPSTREAM_DIR",
    "WEIGHTS_FILE",
    "AnyStageConfig",
    "Cascade",
    "CascadeConfig",
    "DiffusersStageConfig",
    "Limit",
    "ProgressFn",
    "SamplingConfig",
    "Stage",
    "StageConfig",
    "StageEntry",
    "build_cascade_config",
    "cascade_version",
    "check_stages",
    "load_stage_weights",
    "one_of",
    "parse_stage_config",
    "put_stage",
    "read_cascade_config",
    "read_stage_config",
    "resolve_text_encoder_name",
    "save_stage",
    "stage_dir_name",
    "write_model_directory",
    "write_stage_directory",
]

__getattr__ = lazy_exports(__name__, ["sampling", "schema", "stage", "modeldir", "pipeline"])
