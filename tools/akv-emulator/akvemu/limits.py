"""Published request limits: which window a data-plane request is counted in.

Key vaults (Learn service-limits, reference §9 and §11): transactions per vault per 10 s.
  HSM key CREATE 10, software key CREATE 20 [C];
  key IMPORT 300, a bucket shared with secret CREATE and certificate IMPORT (the 2025-07-23
  include), not CREATE's [C];
  other key transactions: HSM 2000, software 4000 for RSA-2048 and every EC curve; RSA-3072
  costs 4 and RSA-4096 8 such units (the doc's weighted sum) [C];
  everything else (list, delete, purge, recover, backup, restore, ...) 4000 [U: which bucket
  delete, purge and recover count in is not published];
  rotate makes a new version, so it is counted as a CREATE [I].
  Over the limit the vault answers 429 at once.
Managed HSM (scaling-guidance.md): no 10-second windows; capacity per HSM per second, measured
  on one partition (three partitions may give up to 3x) [C]. Create 1; delete, purge, backup,
  restore 10 each; get 1100; cryptographic operations by key type and size (tables below).
  "Managed HSM does not throttle on cryptographic operation transactions" [C]: past capacity a
  get or crypto request waits for the HSM instead of being refused; past the create / delete /
  purge / backup / restore capacity the emulator answers 429 [U]. Operations without a
  published number (import, list, update, recover, rotation policy, rng) are not limited [U];
  rotate is counted as a create [I].
"""
from . import keycrypto

VAULT_WINDOW = 10.0
MHSM_WINDOW = 1.0
VAULT_LIMITS = {"create-hsm": 10, "create-sw": 20, "import": 300, "other-hsm": 2000, "other-sw": 4000,
                "vault": 4000}
MHSM_MANAGE = {"create": 1, "rotate": 1, "delete": 10, "purge": 10, "backup": 10, "restore": 10}
MHSM_GET = 1100
# operation -> capacity per second for RSA-2048 / RSA-3072 / RSA-4096
MHSM_RSA = {"encrypt": (2800, 2700, 2300), "decrypt": (1100, 360, 160), "wrapKey": (2200, 1900, 1900),
            "unwrapKey": (1100, 360, 160), "sign": (900, 340, 150), "verify": (3400, 3400, 3700)}
MHSM_EC = {"sign": {"P-256": 330, "P-256K": 330, "P-384": 160, "P-521": 200},
           "verify": {"P-256": 130, "P-256K": 130, "P-384": 82, "P-521": 28}}
MHSM_AES = {"wrapKey": {128: 2100, 192: 2100, 256: 2100}, "unwrapKey": {128: 1800, 192: 1900, 256: 2200}}
CRYPTO_OPS = ("sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey")


class Charge:
    """One request's place in a window: bucket name, published limit, window length, cost,
    and whether the service refuses (429) or makes the request wait when the window is full."""

    def __init__(self, bucket, limit, window, weight=1, refuse=True):
        self.bucket, self.limit, self.window, self.weight, self.refuse = bucket, limit, window, weight, refuse


def rsa_weight(bits):
    """Cost of one operation relative to RSA-2048 (2000/500 = 4, 2000/250 = 8)."""
    if bits and bits > 3072:
        return 8
    if bits and bits > 2048:
        return 4
    return 1


def vault_charge(op, hsm, rsa_bits=None):
    if op in ("create", "rotate"):
        b = "create-hsm" if hsm else "create-sw"
        return Charge(b, VAULT_LIMITS[b], VAULT_WINDOW)
    if op == "import":
        return Charge("import", VAULT_LIMITS["import"], VAULT_WINDOW)
    if op in ("get", "list", "update") + CRYPTO_OPS:
        b = "other-hsm" if hsm else "other-sw"
        return Charge(b, VAULT_LIMITS[b], VAULT_WINDOW, rsa_weight(rsa_bits))
    return Charge("vault", VAULT_LIMITS["vault"], VAULT_WINDOW)


def _rsa_index(bits):
    return 0 if bits <= 2048 else 1 if bits <= 3072 else 2


def mhsm_charge(op, jwk=None):
    """The Managed HSM capacity a request counts against, or None (not limited)."""
    if op in MHSM_MANAGE:
        return Charge(op, MHSM_MANAGE[op], MHSM_WINDOW)
    if op == "get":
        return Charge("get", MHSM_GET, MHSM_WINDOW, refuse=False)
    if op not in CRYPTO_OPS or jwk is None:
        return None
    if jwk["kty"] == "RSA" and op in MHSM_RSA:
        bits = keycrypto.key_size_bits(jwk)
        return Charge("%s RSA-%d" % (op, bits), MHSM_RSA[op][_rsa_index(bits)], MHSM_WINDOW, refuse=False)
    if jwk["kty"] == "EC" and op in MHSM_EC:
        return Charge("%s %s" % (op, jwk["crv"]), MHSM_EC[op][jwk["crv"]], MHSM_WINDOW, refuse=False)
    if jwk["kty"] == "oct" and op in MHSM_AES:
        bits = keycrypto.key_size_bits(jwk)
        return Charge("%s AES-%d" % (op, bits), MHSM_AES[op][bits], MHSM_WINDOW, refuse=False)
    return None
