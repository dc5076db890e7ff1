"""Content Credentials in tests: edit a signed PNG the way an editor that keeps its chunks
would, and make certificate files of every kind a user might pass."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from openimagen.provenance.devcert import make_development_pem


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG, in file order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + length]))
        i += 12 + length
    return chunks


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, payload in chunks:
        out += struct.pack(">I", len(payload)) + kind + payload
        out += struct.pack(">I", zlib.crc32(kind + payload))
    return bytes(out)


def change_one_pixel(data: bytes, x: int = 0, y: int = 0) -> bytes:
    """``data`` with pixel (x, y)'s red value changed by one, every other chunk (the C2PA
    manifest, the text chunks) kept byte for byte: the new pixels replace the IDAT chunks."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.array(image.convert("RGB"))
    pixels[y, x, 0] ^= 1
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    idat = [c for c in png_chunks(buffer.getvalue()) if c[0] == b"IDAT"]
    kept, placed = [], False
    for chunk in png_chunks(data):
        if chunk[0] == b"IDAT":
            if not placed:
                kept += idat
                placed = True
            continue
        kept.append(chunk)
    return build_png(kept)


def write_credentials(directory: Path, subject: str, issuer: str) -> tuple[Path, Path]:
    """A CA-issued signing certificate chain and its key, as a user would have them."""
    chain, key = make_development_pem(subject=subject, issuer=issuer)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chain.pem").write_bytes(chain)
    (directory / "key.pem").write_bytes(key)
    return directory / "chain.pem", directory / "key.pem"


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (what `openssl req -x509` makes), which C2PA refuses."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "self.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory / "self.pem", directory / "self.key"
