"""Build a BYOK transfer blob (reference §1.2-§1.3) with `cryptography`,
independently of the emulator: RSA-OAEP-SHA1 of a fresh AES-256 key, then
AES key wrap with padding (RFC 5649) of the PKCS#8 (or raw AES) key."""
import json
import os

from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from azhelpers import b64url, b64url_decode


def kek_public_key(kek_jwk):
    """RSA public key from the SDK's JsonWebKey (bytes n, e)."""
    n = int.from_bytes(kek_jwk.n, "big")
    e = int.from_bytes(kek_jwk.e, "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def pkcs8(private_key):
    return private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def byok_blob(kek_kid, kek_public, target_plaintext, aes_key=None):
    """The .byok file bytes (UTF-8 JSON)."""
    aes_key = aes_key or os.urandom(32)
    wrapped_aes = kek_public.encrypt(aes_key, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    wrapped_key = keywrap.aes_key_wrap_with_padding(aes_key, target_plaintext)
    return json.dumps({"schema_version": "1.0.0",
                       "header": {"kid": kek_kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
                       "ciphertext": b64url(wrapped_aes + wrapped_key),
                       "generator": "cdcp11 emulator tests; cryptography"}).encode()
