"""provenance/manifest.py and verify.py: a signed PNG verifies with the expected assertions;
one changed pixel or text chunk is tampering; a PNG from elsewhere has no manifest."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from c2pa_testutil import build_png, change_one_pixel, png_chunks, write_credentials
from openimagen.errors import InvalidArgumentError
from openimagen.images import png_bytes, read_png_metadata
from openimagen.provenance import (
    CREATED_ACTION,
    TRAINED_ALGORITHMIC_MEDIA,
    ContentCredentials,
    content_credentials,
    development_credentials,
    load_credentials,
    model_version,
)

PROMPT = "two red circles above a blue square"


def image(seed: int = 0, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return development_credentials(tmp_path_factory.mktemp("c2pa"))


def signer(dev, **kwargs) -> ContentCredentials:
    return ContentCredentials(dev, model_name="tiny", model_version="sha256:0123", **kwargs)


def test_signed_png_is_valid_with_the_expected_assertions(dev):
    meta = {"prompt": PROMPT, "seed": 3}
    data = png_bytes(image(), meta, credentials=signer(dev))
    report = content_credentials(data)
    assert report["state"] == "valid" and report["failures"] == []
    assert report["trusted"] is False  # nobody trusts the development CA
    assert report["claim_generator"].startswith("openimagen ")
    [action] = report["actions"]
    assert action["action"] == CREATED_ACTION == "c2pa.created"
    assert action["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert TRAINED_ALGORITHMIC_MEDIA.endswith("/digitalsourcetype/trainedAlgorithmicMedia")
    assert action["softwareAgent"] == {"name": "tiny", "version": "sha256:0123"}
    assert "description" not in action and PROMPT not in str(report)  # not opted in
    assert report["signer"]["subject"].startswith("CN=openimagen local development signer")
    assert report["signer"]["issuer"].startswith("CN=openimagen local development CA")
    assert report["signer"]["alg"] == "es256"
    # the text chunks and the pixels are those of the unsigned PNG
    kinds = [kind for kind, _ in png_chunks(data)]
    assert kinds.count(b"caBX") == 1
    unsigned = png_bytes(image(), meta)
    assert [c for c in png_chunks(data) if c[0] != b"caBX"] == png_chunks(unsigned)
    with Image.open(io.BytesIO(data)) as signed:
        assert signed.tobytes() == Image.open(io.BytesIO(unsigned)).tobytes()
        assert signed.text["prompt"] == PROMPT


def test_prompt_is_in_the_manifest_only_when_opted_in(dev):
    data = png_bytes(image(), {"prompt": PROMPT}, credentials=signer(dev, include_prompt=True))
    [action] = content_credentials(data)["actions"]
    assert action["description"] == PROMPT
    without = png_bytes(image(), {"prompt": PROMPT}, credentials=signer(dev))
    assert PROMPT.encode() not in [c for c in png_chunks(without) if c[0] == b"caBX"][0][1]


def test_one_changed_pixel_is_reported_as_tampered(dev):
    data = png_bytes(image(), {"prompt": PROMPT}, credentials=signer(dev))
    edited = change_one_pixel(data, 10, 20)
    assert edited != data and b"caBX" in edited  # the manifest is still there
    report = content_credentials(edited)
    assert report["state"] == "tampered"
    assert "assertion.dataHash.mismatch" in [f["code"] for f in report["failures"]]
    assert report["signer"]["subject"].startswith("CN=openimagen local development signer")


def test_a_changed_text_chunk_is_reported_as_tampered(dev):
    data = png_bytes(image(), {"prompt": PROMPT, "seed": 1}, credentials=signer(dev))
    chunks = [
        (kind, payload.replace(b"seed\x001", b"seed\x002")) if kind == b"tEXt" else (kind, payload)
        for kind, payload in png_chunks(data)
    ]
    edited = build_png(chunks)
    assert read_png_metadata(io.BytesIO(edited))["seed"] == "2"
    assert content_credentials(edited)["state"] == "tampered"


def test_images_from_elsewhere_have_no_manifest(dev):
    buffer = io.BytesIO()
    image().save(buffer, format="PNG")
    assert content_credentials(buffer.getvalue())["state"] == "absent"
    # re-encoding drops the manifest (the watermark is what survives that)
    signed = png_bytes(image(), {}, credentials=signer(dev))
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(signed)).convert("RGB").save(jpeg, format="JPEG", quality=90)
    assert content_credentials(jpeg.getvalue())["state"] == "absent"
    assert content_credentials(b"not an image at all")["state"] == "absent"


def test_user_credentials_sign_and_their_signer_is_reported(tmp_path):
    cert, key = write_credentials(tmp_path, "Example Newsroom signer", "Example Newsroom CA")
    creds = load_credentials(cert, key)
    data = png_bytes(image(), {}, credentials=ContentCredentials(creds, model_name="m"))
    report = content_credentials(data)
    assert report["state"] == "valid" and report["trusted"] is False
    assert report["signer"]["subject"].startswith("CN=Example Newsroom signer")
    assert report["signer"]["issuer"].startswith("CN=Example Newsroom CA")
    assert report["actions"][0]["softwareAgent"] == {"name": "m"}  # no version given
    # with the user's CA as a trust anchor the same file is trusted
    ca_pem = cert.read_bytes().split(b"-----END CERTIFICATE-----\n", 1)[1]
    assert content_credentials(data, trust_anchors=ca_pem)["trusted"] is True


def test_from_settings_reads_the_environment_and_refuses_a_bad_tsa_url(tmp_path):
    cert, key = write_credentials(tmp_path, "env signer", "env CA")
    environ = {"OPENIMAGEN_C2PA_CERT": str(cert), "OPENIMAGEN_C2PA_KEY": str(key)}
    signed = ContentCredentials.from_settings(model_name="m", environ=environ)
    assert signed.credentials.subject.startswith("CN=env signer, O=") and signed.tsa_url is None
    with pytest.raises(InvalidArgumentError, match="timestamp authority URL='ftp://x'"):
        ContentCredentials.from_settings(
            model_name="m", environ={**environ, "OPENIMAGEN_C2PA_TSA_URL": "ftp://x"}
        )


def test_model_version_changes_with_any_model_file(tmp_path):
    (tmp_path / "stage0").mkdir()
    (tmp_path / "cascade.json").write_text("{}")
    (tmp_path / "stage0" / "config.json").write_text("{}")
    (tmp_path / "stage0" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "README.md").write_text("card")
    first = model_version(tmp_path)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    (tmp_path / "README.md").write_text("another card")  # not part of the model
    assert model_version(tmp_path) == first
    (tmp_path / "stage0" / "model.safetensors").write_bytes(b"weightz")
    assert model_version(tmp_path) != first
