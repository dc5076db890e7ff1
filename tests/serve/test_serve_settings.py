"""Server limits (serve/settings.py): checked when made, sampling limits from SamplingConfig."""

from __future__ import annotations

import pytest

from openimagen.cascade import LIMITS
from openimagen.errors import ConfigError
from openimagen.serve.settings import ServeSettings


def test_max_steps_may_not_exceed_what_a_stage_accepts():
    high = int(LIMITS["steps"].high)
    assert ServeSettings(max_steps=high).max_steps == high
    with pytest.raises(ConfigError, match=rf"max_steps={high + 1}: expected an integer in \[1, "):
        ServeSettings(max_steps=high + 1)


def test_a_request_of_n_images_must_fit_one_batch():
    with pytest.raises(ConfigError, match="max_batch_images=2 is smaller than max_n=3"):
        ServeSettings(max_n=3, max_batch_images=2)


def test_the_key_is_never_shown():
    assert "s3cret" not in repr(ServeSettings(api_key="s3cret"))


def test_c2pa_settings_choose_the_signer_and_the_prompt_opt_in(tmp_path):
    from c2pa_testutil import write_credentials
    from openimagen.errors import InvalidArgumentError
    from openimagen.serve.app import content_credentials

    cert, key = write_credentials(tmp_path, "Server signer", "Server CA")
    settings = ServeSettings(c2pa_cert=str(cert), c2pa_key=str(key), c2pa_include_prompt=True)
    signer = content_credentials(settings, "tiny", "sha256:01")
    assert signer.credentials.subject.startswith("CN=Server signer, O=") and signer.include_prompt
    [action] = signer.manifest({"prompt": "a red circle"})["assertions"][0]["data"]["actions"]
    assert action["description"] == "a red circle"
    assert action["softwareAgent"] == {"name": "tiny", "version": "sha256:01"}
    default = content_credentials(ServeSettings(), "tiny")
    assert default.credentials.development and not default.include_prompt
    with pytest.raises(InvalidArgumentError, match="c2pa certificate='.*missing.pem'"):
        content_credentials(ServeSettings(c2pa_cert=str(tmp_path / "missing.pem"),
                                          c2pa_key=str(key)), "tiny")  # fmt: skip
