"""Content Credentials (C2PA): sign generated PNGs and read their manifests.

The signed manifest is the hard-bound record of an image's origin: it names the model, its
version and (when the user opts in) the prompt, and any change to the file's bytes breaks
it. The invisible watermark (:mod:`openimagen.watermark`) is the second, soft binding, the
one that survives re-encoding. See docs/serving.md, "Provenance".

- :func:`resolve_credentials`: the user's certificate chain and key, or the local
  development certificate made on first use (:mod:`.credentials`, :mod:`.devcert`);
- :class:`ContentCredentials`: signs PNG bytes (:mod:`.manifest`);
- :func:`content_credentials`: reads and judges a file's manifest (:mod:`.verify`).
"""

from __future__ import annotations

from openimagen.provenance.credentials import (
    CERT_ENV,
    KEY_ENV,
    TSA_URL_ENV,
    SigningCredentials,
    config_dir,
    development_credentials,
    load_credentials,
    resolve_credentials,
)
from openimagen.provenance.manifest import (
    CREATED_ACTION,
    TRAINED_ALGORITHMIC_MEDIA,
    ContentCredentials,
    model_version,
)
from openimagen.provenance.verify import content_credentials

__all__ = [
    "CERT_ENV",
    "CREATED_ACTION",
    "KEY_ENV",
    "TRAINED_ALGORITHMIC_MEDIA",
    "TSA_URL_ENV",
    "ContentCredentials",
    "SigningCredentials",
    "config_dir",
    "content_credentials",
    "development_credentials",
    "load_credentials",
    "model_version",
    "resolve_credentials",
]
