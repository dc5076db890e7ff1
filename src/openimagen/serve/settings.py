"""Server limits and options, one frozen config."""

from __future__ import annotations

import dataclasses

from openimagen.cascade.sampling import LIMITS
from openimagen.config import Config
from openimagen.errors import ConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class ServeSettings(Config):
    """Limits of the HTTP API; the defaults suit one small model on one machine."""

    # OpenAI's dall-e-2 allows 1000 characters; the text encoder truncates long prompts anyway
    max_prompt_chars: int = 1000
    # images per request
    max_n: int = 4
    # sampling steps per stage a request may ask for
    max_steps: int = 100
    # request body limit in bytes (a prompt of max_prompt_chars fits with room to spare)
    max_body_bytes: int = 16384
    # requests waiting for the generation thread; one more gets 429
    max_queue: int = 16
    # images sampled together in one batch
    max_batch_images: int = 8
    # ``url`` responses: how many images are kept, and for how long
    max_stored_images: int = 256
    image_ttl_s: float = 3600.0
    # when set, every /v1 request needs ``Authorization: Bearer <api_key>``
    api_key: str | None = None
    # base of the image URLs in ``url`` responses; default: the URL the request came to
    public_url: str | None = None
    # host names accepted in the Host header (DNS-rebinding guard); None accepts any. The
    # default fits the default loopback bind; run_server lifts it for other binds.
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES
    # embed the invisible watermark (the PNG text chunks are always written)
    watermark: bool = True
    # Content Credentials: every PNG carries a signed C2PA manifest. The certificate chain
    # and key (PEM files; None: $OPENIMAGEN_C2PA_CERT / $OPENIMAGEN_C2PA_KEY, else the local
    # development certificate), an optional RFC 3161 timestamp authority (None:
    # $OPENIMAGEN_C2PA_TSA_URL, else none), and whether the prompt goes into the manifest
    c2pa_cert: str | None = None
    c2pa_key: str | None = None
    c2pa_tsa_url: str | None = None
    c2pa_include_prompt: bool = False

    def validate(self) -> None:
        for name in (
            "max_prompt_chars",
            "max_n",
            "max_steps",
            "max_body_bytes",
            "max_queue",
            "max_batch_images",
            "max_stored_images",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: expected an integer >= 1")
        steps = LIMITS["steps"]
        if not steps.allows(self.max_steps):  # what a stage's SamplingConfig accepts
            raise ConfigError(f"max_steps={self.max_steps}: expected {steps.describe()}")
        if self.image_ttl_s <= 0:
            raise ConfigError(f"image_ttl_s={self.image_ttl_s}: expected a number > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty: unset it, or set a non-empty key")
        if self.max_batch_images < self.max_n:
            raise ConfigError(
                f"max_batch_images={self.max_batch_images} is smaller than max_n={self.max_n}: "
                "a request of n images must fit in one batch"
            )

    def __repr__(self) -> str:  # never print the key
        shown = dataclasses.replace(self, api_key="***" if self.api_key else None)
        return (
            "ServeSettings("
            + ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in dataclasses.fields(self))
            + ")"
        )


__all__ = ["LOOPBACK_NAMES", "ServeSettings"]
