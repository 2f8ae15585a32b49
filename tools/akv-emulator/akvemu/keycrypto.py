"""Key material: generation, JWK conversion, crypto operations, BYOK unwrap.

Private material is kept as a JWK dict (all parts base64url) in the vault's
state file; live key objects are built from it on demand and cached.
All algorithms follow reference §3.2 (sign takes a digest; ECDSA signatures
are raw r||s; RS* wraps the digest in a DigestInfo).
"""
import json
import os

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives import padding as sympadding

from .errors import bad_parameter
from .jose import JoseError, b64_decode_any, b64_to_int, b64url_encode, int_to_b64

CURVES = {  # JWK crv -> (curve class, field length in bytes)
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
    "P-256K": (ec.SECP256K1, 32),
}
CURVE_BY_NAME = {cls.name: crv for crv, (cls, _) in CURVES.items()}
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
ALL_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"]

# Sign algorithms: name -> (family, hash class, curve)
SIGN_ALGS = {
    "RS256": ("rsa", hashes.SHA256, None), "RS384": ("rsa", hashes.SHA384, None),
    "RS512": ("rsa", hashes.SHA512, None),
    "PS256": ("pss", hashes.SHA256, None), "PS384": ("pss", hashes.SHA384, None),
    "PS512": ("pss", hashes.SHA512, None),
    "RSNULL": ("rsanull", None, None),
    "ES256": ("ec", hashes.SHA256, "P-256"), "ES384": ("ec", hashes.SHA384, "P-384"),
    "ES512": ("ec", hashes.SHA512, "P-521"), "ES256K": ("ec", hashes.SHA256, "P-256K"),
}


def base_kty(kty):
    return kty[:-4] if kty.endswith("-HSM") else kty


def default_key_ops(kty):
    """key_ops the service fills in when a create/import request names none [I]."""
    b = base_kty(kty)
    if b == "RSA":
        return ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
    if b == "EC":
        return ["sign", "verify"]
    return ["encrypt", "decrypt", "wrapKey", "unwrapKey"]


# ---------------------------------------------------------------- generation

def generate(kty, key_size=None, crv=None, public_exponent=None):
    """Create new key material; returns a private JWK dict."""
    b = base_kty(kty)
    if b == "RSA":
        size = int(key_size or 2048)
        if size not in RSA_SIZES:
            raise bad_parameter("Invalid key size %s for RSA key. Valid values are 2048, 3072, 4096." % size)
        e = int(public_exponent or 65537)
        if e not in (3, 65537):
            raise bad_parameter("Invalid public exponent %s." % e)
        return rsa_to_jwk(rsa.generate_private_key(public_exponent=e, key_size=size))
    if b == "EC":
        crv = crv or "P-256"
        if crv not in CURVES:
            raise bad_parameter("Invalid curve name %s. Valid values are P-256, P-384, P-521, P-256K." % crv)
        return ec_to_jwk(ec.generate_private_key(CURVES[crv][0]()))
    if b == "oct":
        size = int(key_size or 256)
        if size not in OCT_SIZES:
            raise bad_parameter("Invalid key size %s for oct key. Valid values are 128, 192, 256." % size)
        return {"kty": "oct", "k": b64url_encode(os.urandom(size // 8))}
    raise bad_parameter("Invalid key type %s." % kty)


def rsa_to_jwk(key):
    pn = key.private_numbers()
    pub = pn.public_numbers
    return {"kty": "RSA", "n": int_to_b64(pub.n), "e": int_to_b64(pub.e), "d": int_to_b64(pn.d),
            "p": int_to_b64(pn.p), "q": int_to_b64(pn.q), "dp": int_to_b64(pn.dmp1),
            "dq": int_to_b64(pn.dmq1), "qi": int_to_b64(pn.iqmp)}


def ec_to_jwk(key):
    crv = CURVE_BY_NAME.get(key.curve.name)
    if crv is None:
        raise bad_parameter("Unsupported curve %s." % key.curve.name)
    ln = CURVES[crv][1]
    pn = key.private_numbers()
    return {"kty": "EC", "crv": crv, "x": int_to_b64(pn.public_numbers.x, ln),
            "y": int_to_b64(pn.public_numbers.y, ln), "d": int_to_b64(pn.private_value, ln)}


# ---------------------------------------------------------------- JWK import

def import_jwk(jwk):
    """Validate a plain (software) JWK with private parts; return the stored
    private JWK in canonical form (reference §2)."""
    b = base_kty(jwk.get("kty") or "")
    try:
        if b == "RSA":
            for f in ("n", "e", "d"):
                if not jwk.get(f):
                    raise bad_parameter("RSA key is missing parameter '%s'." % f)
            n, e, d = b64_to_int(jwk["n"]), b64_to_int(jwk["e"]), b64_to_int(jwk["d"])
            if jwk.get("p") and jwk.get("q"):
                p, q = b64_to_int(jwk["p"]), b64_to_int(jwk["q"])
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            key = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                        rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, n)).private_key()
            if key.key_size not in RSA_SIZES and key.key_size != 1024:
                raise bad_parameter("Invalid RSA key size %d." % key.key_size)
            return rsa_to_jwk(key)
        if b == "EC":
            crv = jwk.get("crv")
            if crv not in CURVES:
                raise bad_parameter("Invalid curve name %r." % crv)
            if not jwk.get("d"):
                raise bad_parameter("EC key is missing parameter 'd'.")
            key = ec.derive_private_key(b64_to_int(jwk["d"]), CURVES[crv][0]())
            pub = key.public_key().public_numbers()
            if jwk.get("x") and jwk.get("y") and (b64_to_int(jwk["x"]), b64_to_int(jwk["y"])) != (pub.x, pub.y):
                raise bad_parameter("EC key: x/y do not match d.")
            return ec_to_jwk(key)
        if b == "oct":
            k = b64_decode_any(jwk.get("k") or "")
            if len(k) * 8 not in OCT_SIZES:
                raise bad_parameter("Invalid oct key size %d bits." % (len(k) * 8))
            return {"kty": "oct", "k": b64url_encode(k)}
    except (ValueError, JoseError) as exc:
        raise bad_parameter("The key material is invalid: %s" % exc) from None
    raise bad_parameter("Invalid key type %r." % jwk.get("kty"))


def public_jwk(priv):
    """Public fields of a stored private JWK (responses never carry d/p/q/k)."""
    if priv["kty"] == "RSA":
        return {"n": priv["n"], "e": priv["e"]}
    if priv["kty"] == "EC":
        return {"crv": priv["crv"], "x": priv["x"], "y": priv["y"]}
    return {}


def load(priv):
    """Live key object (RSA/EC private key) or raw bytes (oct) from a JWK."""
    if priv["kty"] == "RSA":
        n, e = b64_to_int(priv["n"]), b64_to_int(priv["e"])
        return rsa.RSAPrivateNumbers(
            b64_to_int(priv["p"]), b64_to_int(priv["q"]), b64_to_int(priv["d"]),
            b64_to_int(priv["dp"]), b64_to_int(priv["dq"]), b64_to_int(priv["qi"]),
            rsa.RSAPublicNumbers(e, n)).private_key()
    if priv["kty"] == "EC":
        return ec.derive_private_key(b64_to_int(priv["d"]), CURVES[priv["crv"]][0]())
    return b64_decode_any(priv["k"])


def key_size_bits(priv):
    if priv["kty"] == "RSA":
        return b64_to_int(priv["n"]).bit_length()
    if priv["kty"] == "EC":
        return {"P-256": 256, "P-256K": 256, "P-384": 384, "P-521": 521}[priv["crv"]]
    return len(b64_decode_any(priv["k"])) * 8


# ---------------------------------------------------------------- BYOK

def byok_unwrap(key_hsm, kek_priv_jwk, expected_kty, expected_crv):
    """Unwrap a BYOK transfer blob (reference §1.2, §1.3) with the KEK.

    key_hsm is the base64/base64url encoding of the whole .byok JSON; the blob
    header must name the KEK (checked by the caller, which resolves `kid`).
    Returns the private JWK of the target key, checked against kty/crv.
    """
    kek = load(kek_priv_jwk)
    k = kek.key_size // 8
    try:
        ciphertext = b64_decode_any(_byok_blob(key_hsm)["ciphertext"])
    except (JoseError, KeyError, TypeError) as exc:
        raise bad_parameter("The BYOK blob ciphertext is not valid base64url: %s" % exc) from None
    if len(ciphertext) < k + 16 or (len(ciphertext) - k) % 8:
        raise bad_parameter("The BYOK blob ciphertext has an invalid length.")
    try:
        aes_key = kek.decrypt(ciphertext[:k], padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    except ValueError:
        raise bad_parameter("The BYOK blob could not be unwrapped with the key exchange key "
                            "(RSA-OAEP-SHA1 decryption failed).") from None
    # All known tools use a 256-bit transport key; 128/192 are [U] and accepted.
    if len(aes_key) not in (16, 24, 32):
        raise bad_parameter("The BYOK transport key has an invalid length.")
    try:
        plain = keywrap.aes_key_unwrap_with_padding(aes_key, ciphertext[k:])
    except keywrap.InvalidUnwrap:
        raise bad_parameter("The BYOK blob could not be unwrapped (AES key wrap with padding "
                            "integrity check failed).") from None
    b = base_kty(expected_kty)
    if b == "oct":
        if len(plain) * 8 not in OCT_SIZES:
            raise bad_parameter("The wrapped AES key has an invalid size of %d bits." % (len(plain) * 8))
        return {"kty": "oct", "k": b64url_encode(plain)}
    try:
        key = serialization.load_der_private_key(plain, None)
    except (ValueError, TypeError):
        raise bad_parameter("The wrapped key material is not a valid PKCS#8 private key.") from None
    if b == "RSA":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise bad_parameter("The wrapped key is not an RSA key but kty is %s." % expected_kty)
        if key.key_size not in RSA_SIZES:
            raise bad_parameter("The wrapped RSA key has an unsupported size of %d bits." % key.key_size)
        return rsa_to_jwk(key)
    if b == "EC":
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise bad_parameter("The wrapped key is not an EC key but kty is %s." % expected_kty)
        crv = CURVE_BY_NAME.get(key.curve.name)
        if crv != expected_crv:
            raise bad_parameter("The wrapped EC key is on curve %s but crv is %s." % (crv, expected_crv))
        return ec_to_jwk(key)
    raise bad_parameter("Invalid key type %r for BYOK import." % expected_kty)


def _byok_blob(key_hsm):
    try:
        blob = json.loads(b64_decode_any(key_hsm))
    except (JoseError, ValueError, UnicodeDecodeError):
        raise bad_parameter("key_hsm is not a base64-encoded BYOK transfer blob.") from None
    if not isinstance(blob, dict):
        raise bad_parameter("key_hsm is not a BYOK transfer blob.")
    return blob


def byok_header(key_hsm):
    """Parse and check the blob header; returns the KEK kid."""
    blob = _byok_blob(key_hsm)
    header = blob.get("header")
    if not isinstance(header, dict) or not isinstance(header.get("kid"), str):
        raise bad_parameter("The BYOK blob has no header.kid.")
    if header.get("alg") != "dir" or header.get("enc") != "CKM_RSA_AES_KEY_WRAP":
        raise bad_parameter("The BYOK blob header must have alg 'dir' and enc 'CKM_RSA_AES_KEY_WRAP'.")
    if "ciphertext" not in blob:
        raise bad_parameter("The BYOK blob has no ciphertext.")
    return header["kid"]


# ---------------------------------------------------------------- operations

def _digest_for(alg, digest):
    fam, h, _ = SIGN_ALGS[alg]
    if h is not None and len(digest) != h.digest_size:
        raise bad_parameter("Invalid digest length %d for algorithm %s; expected %d bytes."
                            % (len(digest), alg, h.digest_size))
    return fam, h


def _check_sign_alg(priv, alg):
    if alg not in SIGN_ALGS:
        raise bad_parameter("Invalid algorithm %r." % alg)
    fam, _, crv = SIGN_ALGS[alg]
    if (fam == "ec") != (priv["kty"] == "EC") or priv["kty"] == "oct":
        raise bad_parameter("Algorithm %s is not supported for key type %s." % (alg, priv["kty"]))
    if fam == "ec" and crv != priv["crv"]:
        raise bad_parameter("Algorithm %s requires curve %s; the key is %s." % (alg, crv, priv["crv"]))


def _emsa_pkcs1(value, k):
    if len(value) > k - 11:
        raise bad_parameter("Value is too long for RSNULL with this key.")
    return b"\x00\x01" + b"\xff" * (k - 3 - len(value)) + b"\x00" + value


def sign(priv, key, alg, digest):
    _check_sign_alg(priv, alg)
    fam, h = _digest_for(alg, digest)
    if fam == "rsa":
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(h()))
    if fam == "pss":
        # Key Vault uses a salt as long as the digest [I].
        return key.sign(digest, padding.PSS(padding.MGF1(h()), h.digest_size), utils.Prehashed(h()))
    if fam == "rsanull":
        # Raw PKCS#1 v1.5 signature over a caller-built DigestInfo.
        pn = key.private_numbers()
        k = (pn.public_numbers.n.bit_length() + 7) // 8
        m = int.from_bytes(_emsa_pkcs1(digest, k), "big")
        return pow(m, pn.d, pn.public_numbers.n).to_bytes(k, "big")
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(h())))
    r, s = utils.decode_dss_signature(der)
    ln = CURVES[priv["crv"]][1]
    return r.to_bytes(ln, "big") + s.to_bytes(ln, "big")   # raw r||s (RFC 7518)


def verify(priv, key, alg, digest, sig):
    _check_sign_alg(priv, alg)
    fam, h = _digest_for(alg, digest)
    pub = key.public_key()
    try:
        if fam == "rsa":
            pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(h()))
        elif fam == "pss":
            pub.verify(sig, digest, padding.PSS(padding.MGF1(h()), padding.PSS.AUTO), utils.Prehashed(h()))
        elif fam == "rsanull":
            pn = pub.public_numbers()
            k = (pn.n.bit_length() + 7) // 8
            if len(sig) != k:
                return False
            return pow(int.from_bytes(sig, "big"), pn.e, pn.n).to_bytes(k, "big") == _emsa_pkcs1(digest, k)
        else:
            ln = CURVES[priv["crv"]][1]
            if len(sig) != 2 * ln:
                return False
            der = utils.encode_dss_signature(int.from_bytes(sig[:ln], "big"), int.from_bytes(sig[ln:], "big"))
            pub.verify(der, digest, ec.ECDSA(utils.Prehashed(h())))
    except InvalidSignature:
        return False
    return True


RSA_ENC = {
    "RSA-OAEP": lambda: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
    "RSA-OAEP-256": lambda: padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    "RSA1_5": padding.PKCS1v15,
}
AES_ALGS = {}
for _bits in (128, 192, 256):
    for _mode in ("GCM", "KW", "CBC", "CBCPAD"):
        AES_ALGS["A%d%s" % (_bits, _mode)] = (_bits, _mode)


def _aes_check(priv, key, alg):
    bits, mode = AES_ALGS[alg]
    if priv["kty"] != "oct":
        raise bad_parameter("Algorithm %s is only supported for oct keys." % alg)
    if len(key) * 8 != bits:
        raise bad_parameter("Algorithm %s requires a %d-bit key; the key has %d bits." % (alg, bits, len(key) * 8))
    return mode


def encrypt(priv, key, alg, value, iv=None, aad=None, wrap=False):
    """Returns a dict of response fields (value, iv?, tag?, aad?)."""
    if alg in RSA_ENC:
        if priv["kty"] != "RSA":
            raise bad_parameter("Algorithm %s is only supported for RSA keys." % alg)
        try:
            return {"value": key.public_key().encrypt(value, RSA_ENC[alg]())}
        except ValueError:
            raise bad_parameter("The plaintext is too long for %s with this key." % alg) from None
    if alg not in AES_ALGS:
        raise bad_parameter("Invalid algorithm %r." % alg)
    mode = _aes_check(priv, key, alg)
    if mode == "KW":
        if len(value) % 8 or len(value) < 16:
            raise bad_parameter("AES key wrap needs a multiple of 8 bytes, at least 16.")
        return {"value": keywrap.aes_key_wrap(key, value)}
    if mode == "GCM":
        iv = iv or os.urandom(12)
        out = AESGCM(key).encrypt(iv, value, aad)
        res = {"value": out[:-16], "iv": iv, "tag": out[-16:]}
        if aad:
            res["aad"] = aad
        return res
    iv = iv or os.urandom(16)
    if len(iv) != 16:
        raise bad_parameter("The IV must be 16 bytes for %s." % alg)
    if mode == "CBCPAD":
        p = sympadding.PKCS7(128).padder()
        value = p.update(value) + p.finalize()
    elif len(value) % 16:
        raise bad_parameter("%s needs a multiple of 16 bytes; use %sPAD." % (alg, alg))
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return {"value": enc.update(value) + enc.finalize(), "iv": iv}


def decrypt(priv, key, alg, value, iv=None, aad=None, tag=None):
    if alg in RSA_ENC:
        if priv["kty"] != "RSA":
            raise bad_parameter("Algorithm %s is only supported for RSA keys." % alg)
        try:
            return {"value": key.decrypt(value, RSA_ENC[alg]())}
        except ValueError:
            raise bad_parameter("Decryption failed: the ciphertext is invalid for this key "
                                "and algorithm.") from None
    if alg not in AES_ALGS:
        raise bad_parameter("Invalid algorithm %r." % alg)
    mode = _aes_check(priv, key, alg)
    try:
        if mode == "KW":
            return {"value": keywrap.aes_key_unwrap(key, value)}
        if mode == "GCM":
            if not iv or not tag:
                raise bad_parameter("AES-GCM decryption needs iv and tag.")
            return {"value": AESGCM(key).decrypt(iv, value + tag, aad)}
        if not iv or len(iv) != 16 or len(value) % 16:
            raise bad_parameter("AES-CBC decryption needs a 16-byte iv and whole blocks.")
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out = dec.update(value) + dec.finalize()
        if mode == "CBCPAD":
            u = sympadding.PKCS7(128).unpadder()
            out = u.update(out) + u.finalize()
        return {"value": out}
    except (InvalidTag, keywrap.InvalidUnwrap, ValueError):
        raise bad_parameter("Decryption failed: integrity check or padding is invalid.") from None
