"""The shapes world: procedurally rendered scenes of coloured shapes with an exact spec.

It is openimagen's embedded data set and the ground truth of ShapeBench
(``openimagen.eval.shapebench``). A scene has 1 to 4 objects (circle, square or upright
triangle; one of six colours; small or large) on a plain background, optionally with
spatial relations between objects or counted groups. Everything is defined in normalized
coordinates (x right, y down, both in [0, 1]), so one seed gives the same scene at every
resolution, which the super-resolution stages of the cascade rely on.

The package, one concept per module:

* :mod:`.spec`: the concepts (colours, shapes, sizes, relations) and the JSON scene spec;
* :mod:`.language`: the caption language (words and constructions per split);
* :mod:`.world`: :class:`ShapesConfig`, the splits and the scene distribution;
* :mod:`.layout`: placing a spec's objects; :mod:`.render`: anti-aliased pixels;
* :mod:`.dataset`: :class:`ShapesWorld`, the torch data set.
"""

from openimagen.data.shapes.dataset import ShapesWorld, collate_shapes
from openimagen.data.shapes.language import (
    CaptionLanguage,
    describe,
    language_overlap,
)
from openimagen.data.shapes.languages import PARAPHRASE_LANGUAGE, TRAIN_LANGUAGE
from openimagen.data.shapes.layout import Layout, PlacedObject, relation_holds, sample_layout
from openimagen.data.shapes.render import (
    coverage,
    default_supersample,
    render,
    render_layout,
    to_tensor,
)
from openimagen.data.shapes.spec import (
    AREA_FACTOR,
    BACKGROUND_COLORS,
    INVERSE_RELATION,
    MAX_OBJECTS,
    OBJECT_COLORS,
    RELATIONS,
    SHAPES,
    SIZES,
    SPLITS,
    ShapeObject,
    ShapeSpec,
    check_split,
)
from openimagen.data.shapes.world import (
    DEFAULT_MIX,
    SCENE_KINDS,
    ShapesConfig,
    caption,
    sample_spec,
)

__all__ = [
    "AREA_FACTOR",
    "BACKGROUND_COLORS",
    "DEFAULT_MIX",
    "INVERSE_RELATION",
    "MAX_OBJECTS",
    "OBJECT_COLORS",
    "PARAPHRASE_LANGUAGE",
    "RELATIONS",
    "SCENE_KINDS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TRAIN_LANGUAGE",
    "CaptionLanguage",
    "Layout",
    "PlacedObject",
    "ShapeObject",
    "ShapeSpec",
    "ShapesConfig",
    "ShapesWorld",
    "caption",
    "check_split",
    "collate_shapes",
    "coverage",
    "default_supersample",
    "describe",
    "language_overlap",
    "relation_holds",
    "render",
    "render_layout",
    "sample_layout",
    "sample_spec",
    "to_tensor",
]
