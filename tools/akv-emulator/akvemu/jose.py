"""Minimal JOSE helpers: base64url, compact JWS (RS256/PS256), thumbprints.

Only what the emulator needs: it signs its own access tokens (RS256, like
Entra ID) and verifies client assertions (RS256 + x5t or PS256 + x5t#S256,
as MSAL sends them).
"""
import base64
import binascii
import hashlib
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, ec


class JoseError(Exception):
    pass


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 / RFC 7518, what Key Vault sends)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_decode_any(text) -> bytes:
    """Decode base64 or base64url, padded or not.

    Key Vault clients differ (the Python SDK strips padding and uses the URL
    alphabet; some tools send standard padded base64), so accept all forms.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii")
    if not isinstance(text, str):
        raise JoseError("expected a base64 string")
    s = "".join(text.split())
    s = s.replace("-", "+").replace("_", "/").rstrip("=")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JoseError("invalid base64 value") from exc


def int_to_b64(n: int, length: int = 0) -> str:
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    if length:
        raw = raw.rjust(length, b"\0")
    return b64url_encode(raw)


def b64_to_int(s) -> int:
    return int.from_bytes(b64_decode_any(s), "big")


def cert_thumbprints(cert_der: bytes):
    """(x5t, x5t#S256) of a certificate: base64url of SHA-1 / SHA-256 of DER."""
    return (b64url_encode(hashlib.sha1(cert_der).digest()),
            b64url_encode(hashlib.sha256(cert_der).digest()))


def sign_jwt(claims: dict, private_key, header_extra: dict = None, alg="RS256") -> str:
    header = {"typ": "JWT", "alg": alg}
    if header_extra:
        header.update(header_extra)
    h = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    p = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = (h + "." + p).encode("ascii")
    if alg == "RS256":
        sig = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = private_key.sign(signing_input,
                               padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    else:
        raise JoseError("unsupported alg " + alg)
    return h + "." + p + "." + b64url_encode(sig)


def decode_jwt_unverified(token: str):
    """Split a compact JWS into (header, claims, signing_input, signature)."""
    try:
        h, p, s = token.split(".")
        header = json.loads(b64_decode_any(h))
        claims = json.loads(b64_decode_any(p))
        sig = b64_decode_any(s)
    except (ValueError, JoseError) as exc:
        raise JoseError("malformed JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("malformed JWT")
    return header, claims, (h + "." + p).encode("ascii"), sig


def verify_jws_signature(header: dict, signing_input: bytes, sig: bytes, public_key) -> None:
    """Raise JoseError unless sig is a valid RS256/PS256 signature."""
    alg = header.get("alg")
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise JoseError("only RSA keys are supported")
    try:
        if alg == "RS256":
            public_key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            # MSAL uses the digest length as the salt length; accept any.
            public_key.verify(sig, signing_input,
                              padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                              hashes.SHA256())
        else:
            raise JoseError("unsupported JWS alg %r" % alg)
    except InvalidSignature as exc:
        raise JoseError("signature validation failed") from exc


def public_key_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
