"""A local development CA and signing certificate for Content Credentials (``cryptography``).

c2pa-rs refuses self-signed signing certificates, so this makes two: a CA (P-256, 10 years)
and an end-entity certificate it issues (P-256, ES256, 5 years) with what the C2PA
certificate profile asks of a claim signer: X.509 v3, ``basicConstraints CA:FALSE``, a
critical ``keyUsage`` of ``digitalSignature``, the ``emailProtection`` extended key usage,
subject and authority key identifiers. The organisation name says it is untrusted.
"""

from __future__ import annotations

import datetime

DEV_ORGANIZATION = "openimagen (untrusted development certificate)"
CA_DAYS, SIGNER_DAYS = 3650, 1825


def make_development_pem(*, subject: str, issuer: str) -> tuple[bytes, bytes]:
    """(chain PEM: signer then CA, signer's PKCS#8 key PEM), freshly generated."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
        ])  # fmt: skip

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
            crl_sign=not sign, encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key, signer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = name(issuer)
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    signer = (
        x509.CertificateBuilder().subject_name(name(subject)).issuer_name(ca_name)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=SIGNER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    chain = signer.public_bytes(pem) + ca.public_bytes(pem)
    key = signer_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key


__all__ = ["CA_DAYS", "DEV_ORGANIZATION", "SIGNER_DAYS", "make_development_pem"]
