"""Read and judge the C2PA manifest of an image file (``openimagen verify``).

States: ``valid`` (signature and every hash check out), ``tampered`` (a hash or the
signature does not match: the image, its text chunks or the manifest changed after
signing), ``invalid`` (another failure, such as an expired or unusable certificate, or a
manifest that cannot be parsed) and ``absent`` (no manifest: an image from elsewhere, or
one re-encoded by a tool that drops it). Whether the signer is *trusted* is separate: only
with trust anchors (``trust_anchors``, PEM) can a certificate be trusted; the local
development certificate never is. Reading needs no network (OCSP is not fetched).
"""

from __future__ import annotations

import io
import json
from typing import Any

# failure codes that mean "changed after signing", as opposed to certificate problems
TAMPER_CODES = (
    "assertion.dataHash.mismatch",
    "assertion.boxesHash.mismatch",
    "assertion.bmffHash.mismatch",
    "assertion.hashedURI.mismatch",
    "assertion.collectionHash.mismatch",
    "claimSignature.mismatch",
)
# a failure of trust, reported as ``trusted: false`` rather than as a broken manifest
UNTRUSTED_CODE = "signingCredential.untrusted"
MIME_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def content_credentials(data: bytes, *, trust_anchors: bytes | None = None) -> dict[str, Any]:
    """The manifest of image bytes, judged: ``state``, ``trusted``, ``signer`` (subject,
    issuer, algorithm), ``claim_generator``, ``actions`` and the ``failures`` (code and
    explanation) behind a ``tampered`` or ``invalid`` state."""
    import c2pa

    report: dict[str, Any] = {"state": "absent", "trusted": False, "signer": None,
                              "claim_generator": None, "actions": [], "failures": []}  # fmt: skip
    mime = _mime_type(data)
    if mime is None:
        return report
    # never the network: no OCSP, no remote manifests (keys of c2pa-rs's `verify` settings)
    settings: dict[str, Any] = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors.decode("ascii", "replace")}
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context.from_dict(settings))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "JUMBF" in str(exc):
            return report
        report.update(state="invalid", failures=[{"code": "manifest.unreadable",
                                                  "explanation": str(exc)}])  # fmt: skip
        return report
    with reader:
        store = json.loads(reader.json())
        crjson = _crjson(reader)
        state = reader.get_validation_state() or "Invalid"
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    failures = [f for f in store.get("validation_results", {}).get("activeManifest", {})
                .get("failure", []) if f.get("code") != UNTRUSTED_CODE]  # fmt: skip
    if state in ("Valid", "Trusted") and not failures:
        verdict = "valid"
    elif any(f.get("code") in TAMPER_CODES for f in failures):
        verdict = "tampered"
    else:
        verdict = "invalid"
    report.update(
        state=verdict,
        trusted=state == "Trusted",
        signer=_signer(active, crjson, store.get("active_manifest")),
        claim_generator=" ".join(
            str(g.get(k)) for g in active.get("claim_generator_info", [])[:1]
            for k in ("name", "version") if g.get(k)
        ) or None,
        actions=_actions(active),
        failures=[{"code": f.get("code"), "explanation": f.get("explanation")} for f in failures],
    )  # fmt: skip
    return report


def _mime_type(data: bytes) -> str | None:
    for magic, mime in MIME_TYPES.items():
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _crjson(reader) -> dict[str, Any]:
    try:  # the one view that carries the certificate's subject and issuer
        return json.loads(reader.crjson())
    except Exception:  # an SDK without it: fall back to signature_info's names
        return {}


def _signer(active: dict, crjson: dict, label: str | None) -> dict[str, str] | None:
    info = active.get("signature_info") or {}
    cert = next((m.get("signature", {}) for m in crjson.get("manifests", [])
                 if m.get("label") == label), {}).get("certificateInfo", {})  # fmt: skip
    if not info and not cert:
        return None

    def name(parts: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in parts.items())

    return {
        "subject": name(cert["subject"]) if cert.get("subject") else str(info.get("common_name")),
        "issuer": name(cert["issuer"]) if cert.get("issuer") else str(info.get("issuer")),
        "alg": str(info.get("alg", "")).lower(),
    }


def _actions(active: dict) -> list[dict[str, Any]]:
    actions = []
    for assertion in active.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions += [a for a in assertion.get("data", {}).get("actions", [])
                        if isinstance(a, dict)]  # fmt: skip
    return actions


__all__ = ["MIME_TYPES", "TAMPER_CODES", "UNTRUSTED_CODE", "content_credentials"]
