"""Sign PNG bytes with a C2PA manifest (c2pa-python): the hard-bound provenance record.

The manifest holds one ``c2pa.actions`` assertion with a ``c2pa.created`` action whose
``digitalSourceType`` is IPTC's ``trainedAlgorithmicMedia`` and whose ``softwareAgent`` names
the model and its version; the claim generator is openimagen and its version. The prompt
is written (as the action's ``description``) only when the user opts in. The manifest's
data hash covers every byte of the PNG outside the manifest chunk, pixels and text chunks
alike, so changing any of them is detected.

No network: no timestamp authority unless one is configured (``tsa_url``), and the claim
thumbnail is off (for a PNG it would add a JPEG copy of the image: 400 KB on a 128 px
noise image, measured).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openimagen.errors import InvalidArgumentError
from openimagen.provenance.credentials import TSA_URL_ENV, SigningCredentials, resolve_credentials
from openimagen.version import __version__

# IPTC digital source type of media made by a model trained on sampled content
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CREATED_ACTION = "c2pa.created"
CLAIM_GENERATOR = "openimagen"
# files of a model directory whose bytes make its version (model_version)
MODEL_FILES = ("cascade.json", "*/config.json", "*/model.safetensors")


def model_version(directory: str | os.PathLike) -> str:
    """``sha256:`` and 16 hex digits of the model directory's cascade.json and every stage's
    config.json and model.safetensors (names and bytes, in sorted order): any change to
    the weights or the settings gives another version."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted({p for pattern in MODEL_FILES for p in directory.glob(pattern)}):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


class ContentCredentials:
    """Signs PNGs of one model with one set of credentials (thread-safe, reusable).

    ``sign_png(data, metadata)`` returns the PNG with its manifest; ``metadata`` is the
    image's provenance (:func:`openimagen.images.provenance`), read for ``prompt`` when
    ``include_prompt``.
    """

    def __init__(
        self,
        credentials: SigningCredentials,
        *,
        model_name: str,
        model_version: str | None = None,
        include_prompt: bool = False,
        tsa_url: str | None = None,
    ):
        import c2pa

        self.credentials = credentials
        self.model_name = model_name or "openimagen model"
        self.model_version = model_version
        self.include_prompt = include_prompt
        self.tsa_url = tsa_url or None
        info = c2pa.C2paSignerInfo(
            credentials.alg.encode(), credentials.chain_pem, credentials.key_pem,
            self.tsa_url.encode() if self.tsa_url else None,
        )  # fmt: skip
        try:
            self._signer = c2pa.Signer.from_info(info)
        except c2pa.C2paError as exc:
            raise InvalidArgumentError(
                "c2pa certificate", credentials.source, "credentials c2pa-rs can sign with",
                f"({exc})",
            ) from None  # fmt: skip
        self._context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
        self._lock = threading.Lock()
        self.sign_png(_probe_png())  # refuse unusable credentials now, not after sampling

    @classmethod
    def from_settings(
        cls,
        *,
        model_name: str,
        model_version: str | None = None,
        cert: str | os.PathLike | None = None,
        key: str | os.PathLike | None = None,
        tsa_url: str | None = None,
        include_prompt: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> ContentCredentials:
        """Credentials from options, else the environment (``OPENIMAGEN_C2PA_CERT``,
        ``OPENIMAGEN_C2PA_KEY``, ``OPENIMAGEN_C2PA_TSA_URL``), else the development ones."""
        environ = os.environ if environ is None else environ
        tsa_url = tsa_url or environ.get(TSA_URL_ENV) or None
        if tsa_url is not None and not tsa_url.startswith(("http://", "https://")):
            raise InvalidArgumentError(
                "c2pa timestamp authority URL", tsa_url, "an http:// or https:// URL",
                f"Set --c2pa-tsa-url (or {TSA_URL_ENV}) to an RFC 3161 server, or unset it.",
            )  # fmt: skip
        return cls(
            resolve_credentials(cert, key, environ=environ), model_name=model_name,
            model_version=model_version, include_prompt=include_prompt, tsa_url=tsa_url,
        )  # fmt: skip

    def manifest(self, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The manifest definition for an image with provenance ``metadata``."""
        agent = {"name": self.model_name}
        if self.model_version:
            agent["version"] = self.model_version
        action: dict[str, Any] = {
            "action": CREATED_ACTION,
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": agent,
        }
        prompt = (metadata or {}).get("prompt")
        if self.include_prompt and isinstance(prompt, str):
            action["description"] = prompt
        return {
            "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": __version__}],
            "format": "image/png",
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
        }

    def sign_png(self, data: bytes, metadata: Mapping[str, Any] | None = None) -> bytes:
        """``data`` (a PNG) with an embedded, signed manifest (a ``caBX`` chunk)."""
        import c2pa

        out = io.BytesIO()
        with self._lock:
            try:
                builder = c2pa.Builder(self.manifest(metadata), self._context)
                builder.sign(self._signer, "image/png", io.BytesIO(data), out)
            except c2pa.C2paError as exc:
                where = f" (timestamp authority {self.tsa_url})" if self.tsa_url else ""
                raise InvalidArgumentError(
                    "c2pa signing", self.credentials.source, "credentials c2pa-rs can sign with",
                    f"Signing failed{where}: {exc}",
                ) from None  # fmt: skip
        return out.getvalue()


def _probe_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "CLAIM_GENERATOR",
    "CREATED_ACTION",
    "MODEL_FILES",
    "TRAINED_ALGORITHMIC_MEDIA",
    "ContentCredentials",
    "model_version",
]
