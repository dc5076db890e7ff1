"""Signing credentials for Content Credentials: the user's certificate chain and key, or a
local development certificate made on first use.

The user's files come from options (``--c2pa-cert`` / ``--c2pa-key``) or the environment
(:data:`CERT_ENV`, :data:`KEY_ENV`). Without them, :func:`development_credentials` makes a
CA and an end-entity certificate with ``cryptography`` in the per-user config directory
(``$XDG_CONFIG_HOME/openimagen/c2pa``, default ``~/.config/openimagen/c2pa``) and reuses
them afterwards. Such images verify as signed and unaltered, but no validator trusts the
signer, and a warning on stderr says so.

c2pa-rs signs only with an end-entity certificate (never a self-signed one) that has the
``digitalSignature`` key usage, an extended key usage such as ``emailProtection``
(1.3.6.1.5.5.7.3.4) and no CA flag; :func:`check_signing_certificate` checks that before
signing so a wrong file gives one clear error instead of the SDK's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from openimagen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

CERT_ENV = "OPENIMAGEN_C2PA_CERT"
KEY_ENV = "OPENIMAGEN_C2PA_KEY"
TSA_URL_ENV = "OPENIMAGEN_C2PA_TSA_URL"
# the sub-directory of the per-user config directory holding the development credentials
DEV_DIR_NAME = "dev-credentials"
DEV_CERT_FILE, DEV_KEY_FILE = "chain.pem", "key.pem"
DEV_SUBJECT = "openimagen local development signer"
DEV_ISSUER = "openimagen local development CA"
# extended key usages c2pa-rs accepts for a claim signer (C2PA 2.x, "Certificate Profile")
SIGNING_EKUS = {
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.36": "documentSigning",
    "1.3.6.1.4.1.62558.2.1": "c2pa-kp-claimSigning",
}


@dataclasses.dataclass(frozen=True)
class SigningCredentials:
    """A PEM certificate chain (signer first), its PEM private key and the C2PA algorithm."""

    chain_pem: bytes = dataclasses.field(repr=False)
    key_pem: bytes = dataclasses.field(repr=False)
    alg: str  # "es256" | "es384" | "es512" | "ps256" | "ed25519"
    subject: str  # of the signing certificate, "CN=..., O=..." in the certificate's order
    issuer: str
    development: bool  # the local development certificate (trusted by nobody)
    source: str  # where the files came from, for messages


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user config directory of Content Credentials (XDG base directory spec)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "openimagen" / "c2pa"


def load_credentials(cert: str | os.PathLike, key: str | os.PathLike) -> SigningCredentials:
    """The user's certificate chain (PEM, signer first) and private key (PEM, unencrypted).

    Raises :class:`InvalidArgumentError` naming the file when one is missing, is not PEM,
    does not match the other, or is not a certificate c2pa-rs signs with.
    """
    chain = _read(cert, "c2pa certificate")
    key_pem = _read(key, "c2pa key")
    return credentials_from_pem(chain, key_pem, source=str(cert), key_source=str(key))


def credentials_from_pem(
    chain_pem: bytes, key_pem: bytes, *, source: str, key_source: str | None = None
) -> SigningCredentials:
    """Check a PEM chain and key (see :func:`load_credentials`) and pick the algorithm;
    ``source`` and ``key_source`` name where they came from in error messages."""
    key_source = key_source or source
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise InvalidArgumentError(
            "c2pa certificate", source, "a PEM certificate chain, signing certificate first",
            f"({exc})",
        ) from None  # fmt: skip
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            "c2pa key", key_source, "an unencrypted PEM private key (PKCS#8 or traditional)",
            f"({exc})",
        ) from None  # fmt: skip
    leaf = certs[0]
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise InvalidArgumentError(
            "c2pa key", key_source, "the private key of the chain's first certificate",
            f"It does not match the certificate in {source}: check that the files belong "
            "together and that the signing certificate comes first in the chain.",
        )  # fmt: skip
    check_signing_certificate(leaf, source)
    return SigningCredentials(
        chain_pem=chain_pem,
        key_pem=key_pem,
        alg=_algorithm(key, key_source),
        subject=_name(leaf.subject),
        issuer=_name(leaf.issuer),
        development=False,
        source=source,
    )


def check_signing_certificate(cert, source: str) -> None:
    """Refuse a certificate c2pa-rs would not sign with, saying which rule it breaks."""
    from cryptography import x509

    def refuse(problem: str) -> None:
        raise InvalidArgumentError(
            "c2pa certificate", source,
            "an end-entity certificate with the digitalSignature key usage and the "
            "emailProtection, documentSigning or c2pa claimSigning extended key usage",
            f"This one {problem}.",
        )  # fmt: skip

    if cert.issuer == cert.subject:
        refuse("is self-signed (C2PA needs a certificate issued by a CA)")
    ext = cert.extensions
    with contextlib.suppress(x509.ExtensionNotFound):
        if ext.get_extension_for_class(x509.BasicConstraints).value.ca:
            refuse("is a CA certificate")
    try:
        usage = ext.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        refuse("has no key usage extension")
    if not usage.digital_signature:
        refuse("lacks the digitalSignature key usage")
    try:
        ekus = {u.dotted_string for u in ext.get_extension_for_class(x509.ExtendedKeyUsage).value}
    except x509.ExtensionNotFound:
        refuse("has no extended key usage extension")
    if not ekus & SIGNING_EKUS.keys():
        refuse(f"has none of the extended key usages {sorted(SIGNING_EKUS.values())}")


def development_credentials(directory: str | os.PathLike | None = None) -> SigningCredentials:
    """The local development credentials in ``directory`` (default :func:`config_dir`),
    made on first use and reused afterwards; trusted by no validator.

    The chain and key are written into a temporary directory that is then renamed into
    place, so two processes starting at once end with one pair, never a mismatched one.
    """
    from openimagen.provenance.devcert import make_development_pem

    home = Path(directory) if directory is not None else config_dir()
    target = home / DEV_DIR_NAME
    if not (target / DEV_CERT_FILE).is_file():
        _create_development_files(home, target, make_development_pem)
    chain, key = (
        _read(target / DEV_CERT_FILE, "c2pa certificate"),
        _read(target / DEV_KEY_FILE, "c2pa key"),
    )
    credentials = credentials_from_pem(chain, key, source=str(target))
    return dataclasses.replace(credentials, development=True)


def _create_development_files(home: Path, target: Path, make) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=f".{DEV_DIR_NAME}.", dir=home))
    except OSError as exc:
        raise InvalidArgumentError(
            "the c2pa config directory", str(home), "a directory this user can write",
            f"({exc.strerror or exc}). Set XDG_CONFIG_HOME, or pass --c2pa-cert and "
            f"--c2pa-key (or set {CERT_ENV} and {KEY_ENV}).",
        ) from None  # fmt: skip
    try:
        chain, key = make(subject=DEV_SUBJECT, issuer=DEV_ISSUER)
        (staging / DEV_CERT_FILE).write_bytes(chain)
        fd = os.open(staging / DEV_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            os.fsync(handle.fileno())
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / DEV_CERT_FILE).is_file():
                raise
            return  # another process made them first: use theirs
        logger.warning("made a local development certificate for Content Credentials in %s",
                       target)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_credentials(
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> SigningCredentials:
    """The user's files (arguments first, then :data:`CERT_ENV` / :data:`KEY_ENV`), or the
    development credentials when neither is given (with a warning that nobody trusts them)."""
    environ = os.environ if environ is None else environ
    cert = cert or environ.get(CERT_ENV) or None
    key = key or environ.get(KEY_ENV) or None
    if cert and key:
        return load_credentials(cert, key)
    if cert or key:
        given, missing = ("certificate", "key") if cert else ("key", "certificate")
        raise InvalidArgumentError(
            f"c2pa {missing}", None, f"a PEM {missing} file, given with the {given}",
            f"Pass both --c2pa-cert and --c2pa-key (or set both {CERT_ENV} and {KEY_ENV}), "
            "or neither to sign with the local development certificate.",
        )  # fmt: skip
    credentials = development_credentials(config_dir(environ))
    logger.warning(
        "signing Content Credentials with the local development certificate in %s: no "
        "validator trusts it; set %s and %s to sign with your own", credentials.source,
        CERT_ENV, KEY_ENV,
    )  # fmt: skip
    return credentials


def _read(path: str | os.PathLike, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(
            name, str(path), "a readable PEM file", f"({exc.strerror or exc})"
        ) from None


def _algorithm(key, source: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in curves:
        return curves[key.curve.name]
    raise InvalidArgumentError(
        "c2pa key", source, "an EC P-256/P-384/P-521, Ed25519 or RSA private key"
    )


def _name(name) -> str:
    # the order of the certificate (as `openssl x509 -subject` and c2pa-rs show it), not
    # RFC 4514's reversed one
    return ", ".join(f"{a.rfc4514_attribute_name}={a.value}" for a in name)


def _public_der(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(der, spki)


__all__ = [
    "CERT_ENV",
    "KEY_ENV",
    "SIGNING_EKUS",
    "TSA_URL_ENV",
    "SigningCredentials",
    "check_signing_certificate",
    "config_dir",
    "credentials_from_pem",
    "development_credentials",
    "load_credentials",
    "resolve_credentials",
]
