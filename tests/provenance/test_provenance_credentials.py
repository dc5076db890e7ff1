"""provenance/credentials.py: the user's files or the development certificate, and clear
errors for every file c2pa-rs could not sign with."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography import x509

from c2pa_testutil import write_credentials, write_self_signed
from openimagen.errors import InvalidArgumentError
from openimagen.provenance import (
    CERT_ENV,
    KEY_ENV,
    config_dir,
    development_credentials,
    load_credentials,
    resolve_credentials,
)
from openimagen.provenance.credentials import DEV_CERT_FILE, DEV_DIR_NAME, DEV_KEY_FILE


def test_config_dir_follows_xdg_config_home(tmp_path, monkeypatch):
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "openimagen" / "c2pa"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # unset, empty or relative: the spec's default, ~/.config
    for environ in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "rel"}):
        assert config_dir(environ) == tmp_path / "home" / ".config" / "openimagen" / "c2pa"


def test_development_certificate_is_made_once_and_reused(tmp_path, caplog):
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="openimagen.provenance"):
        first = resolve_credentials(environ=environ)
    made = [r.getMessage() for r in caplog.records if "made a local development" in r.message]
    assert len(made) == 1
    assert any("no validator trusts it" in r.getMessage() for r in caplog.records)
    folder = tmp_path / "openimagen" / "c2pa" / DEV_DIR_NAME
    chain, key = (folder / DEV_CERT_FILE).read_bytes(), (folder / DEV_KEY_FILE).read_bytes()
    assert stat.S_IMODE(os.stat(folder / DEV_KEY_FILE).st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openimagen.provenance"):
        second = resolve_credentials(environ=environ)
    assert not [r for r in caplog.records if "made a local development" in r.message]
    assert (folder / DEV_CERT_FILE).read_bytes() == chain and second.chain_pem == chain
    assert (folder / DEV_KEY_FILE).read_bytes() == key and second.key_pem == first.key_pem
    assert first.development and second.development and first.alg == "es256"
    assert [p.name for p in folder.parent.iterdir()] == [DEV_DIR_NAME]  # no staging left


def test_development_certificate_fits_the_c2pa_profile(tmp_path):
    creds = development_credentials(tmp_path)
    signer, ca = x509.load_pem_x509_certificates(creds.chain_pem)
    assert signer.issuer == ca.subject != signer.subject
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in eku] == ["1.3.6.1.5.5.7.3.4"]  # emailProtection
    assert "untrusted" in creds.subject


def test_user_files_win_over_the_development_certificate(tmp_path):
    cert, key = write_credentials(tmp_path / "mine", "Example Newsroom signer", "Example CA")
    from_env = resolve_credentials(environ={CERT_ENV: str(cert), KEY_ENV: str(key),
                                            "XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert not from_env.development and "CN=Example Newsroom signer" in from_env.subject
    assert "CN=Example CA" in from_env.issuer
    assert not (tmp_path / "openimagen").exists()  # no development certificate was made
    from_args = resolve_credentials(cert, key, environ={CERT_ENV: "/nonexistent"})
    assert from_args.chain_pem == cert.read_bytes()


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing cert", "c2pa certificate='.*nope.pem' is not valid: expected a readable PEM"),
        ("not pem", "expected a PEM certificate chain"),
        ("wrong key", "key='.*b/key.pem' .* does not match the certificate in .*a/chain.pem"),
        ("self-signed", "is self-signed"),
        ("cert only", "c2pa key=None is not valid: expected a PEM key file"),
    ],
)
def test_bad_credentials_are_one_clear_error(case, match, tmp_path):
    cert, key = write_credentials(tmp_path / "a", "signer", "CA")
    other_cert, other_key = write_credentials(tmp_path / "b", "other", "CA")
    if case == "missing cert":
        cert = tmp_path / "nope.pem"
    elif case == "not pem":
        cert.write_text("hello")
    elif case == "wrong key":
        key = other_key
    elif case == "self-signed":
        cert, key = write_self_signed(tmp_path / "s")
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(InvalidArgumentError, match=match) as error:
        if case == "cert only":
            resolve_credentials(cert, None, environ=environ)
        else:
            load_credentials(cert, key)
    assert "\n" not in str(error.value)


def test_processes_starting_together_end_with_one_matching_pair(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from openimagen.provenance import development_credentials as d; "
            "c = d(sys.argv[1]); sys.stdout.buffer.write(c.chain_pem)")  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(4)
    ]
    chains = {p.communicate(timeout=120)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    folder = tmp_path / DEV_DIR_NAME
    assert chains == {(folder / DEV_CERT_FILE).read_bytes()}  # every process signs with it
    load_credentials(folder / DEV_CERT_FILE, folder / DEV_KEY_FILE)  # and the key matches
    assert [p.name for p in tmp_path.iterdir()] == [DEV_DIR_NAME]
