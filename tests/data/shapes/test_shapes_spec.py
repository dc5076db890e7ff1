"""Scene specs: the JSON form and its field errors."""

from __future__ import annotations

import json

import pytest

from openimagen.data.shapes import ShapeObject, ShapeSpec
from openimagen.errors import InvalidArgumentError


# -- specs -----------------------------------------------------------------------------------
def test_data_spec_json_round_trip_and_field_errors():
    data = {
        "prompt": "a red circle left of a blue square",
        "objects": [
            {"shape": "circle", "color": "red", "size": None},
            {"shape": "square", "color": "blue", "size": "large"},
        ],
        "relations": [[0, "left_of", 1]],
        "background": "black",
    }
    spec = ShapeSpec.from_dict(data)
    assert spec.objects[1] == ShapeObject("square", "blue", "large")
    assert spec.relations == ((0, "left_of", 1),)
    assert ShapeSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec

    bad = json.loads(json.dumps(data))
    bad["objects"][1]["size"] = "medium"
    with pytest.raises(InvalidArgumentError, match=r"spec\.objects\[1\]\.size='medium'"):
        ShapeSpec.from_dict(bad)
    cyclic = dict(data, relations=[[0, "left_of", 1], [1, "left_of", 0]])
    with pytest.raises(InvalidArgumentError, match=r"spec\.relations.*x axis"):
        ShapeSpec.from_dict(cyclic)
    with pytest.raises(InvalidArgumentError, match=r"spec\.relations\[0\]"):
        ShapeSpec.from_dict(dict(data, relations=[[1, "above", 1]]))
    with pytest.raises(InvalidArgumentError, match=r"spec\.colour"):
        ShapeSpec.from_dict(dict(data, colour="red"))
