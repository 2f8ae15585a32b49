"""Key Vault / Managed HSM data plane: /keys and /deletedkeys (reference §3).

Request order, as the service does it: authenticate (401 + challenge),
check api-version, rate limit, authorize (403), then the operation itself.
"""
import json
import os
import re
import threading
import time
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import authz, keycrypto, limits, rotation
from .config import CLOUDS
from .entra import TokenProblem
from .errors import HttpError, bad_parameter, deleted_key_not_found, key_not_found, kv_error
from .fsutil import atomic_write
from .jose import JoseError, b64_decode_any, b64url_encode
from .store import ACTIVE, DELETED, DELETING, RECOVERING, VaultStore
from .web import Response

KEY_NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VERSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
# 7.0-7.6 (and their previews, e.g. the 7.4-preview.1 default of Debian's SDK)
# and the date-based versions that follow 7.6.
API_VERSION_RE = re.compile(r"^(7\.[0-6](-preview(\.\d+)?)?|20\d\d-\d\d-\d\d(-preview)?)$")
CRYPTO_OPS = {"sign": "sign", "verify": "verify", "encrypt": "encrypt", "decrypt": "decrypt",
              "wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}
MAX_PAGE = 25


def api_at_least(api, major, minor):
    """Whether an accepted api-version is major.minor or later (date-based ones from 2025 on
    follow 7.6; the old 2016-10-01 precedes 7.0)."""
    m = re.match(r"^(\d+)\.(\d+)", api)
    if m:
        return (int(m.group(1)), int(m.group(2))) >= (major, minor)
    return api[:4] >= "2025"


def _now():
    return int(time.time())


class KeyVault:
    def __init__(self, config, state_dir, entra, faults):
        self.config = config
        self.entra = entra
        self.faults = faults
        self.stores = {v.host: VaultStore(v, state_dir) for v in config.vaults}
        self._pool_lock = threading.Lock()
        self._rsa_pool, self._pool_turn = {}, {}   # _generate()
        # Backups are opaque, like the real service's: encrypted with a key
        # that never leaves the emulator's state directory.
        bk = os.path.join(state_dir, "backup.key")
        if not os.path.exists(bk):
            atomic_write(bk, AESGCM.generate_key(256))
        with open(bk, "rb") as f:
            self.backup_key = f.read()

    # ================================================================ entry
    def handle(self, req, vault):
        req.service = "keyvault"
        claims = self._authenticate(req, vault)
        api = req.query.get("api-version")
        if not api:
            raise bad_parameter("The request URI must contain the 'api-version' query parameter.")
        if not API_VERSION_RE.match(api):
            raise bad_parameter("The specified version (%s) is not recognized. Consider using the latest "
                                "supported version (7.6)." % api)
        route = self._route(req, vault)
        if route is None:
            raise kv_error(404, "NotFound", "The requested resource was not found: %s %s" %
                           (req.method, req.path))
        handler, op, name, version = route
        req.op, req.vault_name = op, vault.name   # for the request counter (server.py)
        if op in ("rotate", "getrotationpolicy", "setrotationpolicy", "rng") and not api_at_least(api, 7, 3):
            # [U] text; these operations came with 7.3.
            raise bad_parameter("The operation is not supported by api-version %s; it needs 7.3 or later." % api)
        if name is not None and not KEY_NAME_RE.match(name):
            raise bad_parameter("The request URI contains an invalid name: %s" % name)
        store = self.stores[vault.host]
        self._rate(req, vault, store, op, name)
        authz.check(vault, claims, op, name)
        with store.lock:
            return handler(req, vault, store, claims, name, version, op)

    def _authenticate(self, req, vault):
        """Verify the bearer token or raise the 401 with the challenge."""
        cloud = CLOUDS[vault.cloud]
        auth_host = cloud["mhsm_challenge_authority" if vault.kind == "mhsm" else "vault_challenge_authority"]
        challenge = 'Bearer authorization="%s/%s", resource="%s"' % (auth_host, vault.tenant_id, vault.resource)
        headers = {"WWW-Authenticate": challenge}
        try:
            claims = self.entra.validate_access_token(req.headers.get("Authorization"), [vault.resource])
            if str(claims.get("tid", "")).lower() != vault.tenant_id:
                raise TokenProblem("tenant", str(claims.get("iss")))
        except TokenProblem as p:
            if p.kind == "missing":
                if vault.kind == "mhsm":
                    raise HttpError(401, None, headers)   # Managed HSM: empty body [C]
                raise kv_error(401, "Unauthorized", "Request is missing a Bearer or PoP token.",
                               headers=headers)
            # [U] The AKV100xx texts below follow messages seen from the
            # service; the exact wording of each is unconfirmed.
            msg = {
                "signature": "AKV10046: Invalid token: signature validation failed.",
                "expired": "AKV10020: Invalid token: the token has expired.",
                "audience": "AKV10022: Invalid audience. Expected %s, found: %s." % (vault.resource, p.detail),
                "tenant": "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/%s/, found: %s."
                          % (vault.tenant_id, p.detail),
            }[p.kind]
            raise kv_error(401, "Unauthorized", msg, headers=headers)
        req.client_id = claims.get("appid", "-")
        return claims

    def _route(self, req, vault):
        """(handler, op, key name, version) for a request, or None."""
        p = req.path.rstrip("/") if req.path != "/" else req.path
        segs = [s for s in p.split("/")][1:]
        m, n = req.method, len(segs)
        latest_slash = req.path.endswith("/")   # /keys/{n}/ = latest (SDKs send an empty version)
        if not segs:
            return None
        if segs[0] == "keys":
            if n == 1 and m == "GET":
                return self.list_keys, "list", None, None
            if n == 2 and segs[1] == "restore" and m == "POST":
                return self.restore, "restore", None, None
            if n == 2:
                name = segs[1]
                if m == "PUT" and not latest_slash:
                    return self.import_key, "import", name, None
                if m == "DELETE" and not latest_slash:
                    return self.delete_key, "delete", name, None
                if m == "GET":
                    return self.get_key, "get", name, None
                if m == "PATCH":
                    return self.update_key, "update", name, None
                return None
            if n == 3:
                name, sub = segs[1], segs[2]
                if sub == "create" and m == "POST":
                    return self.create_key, "create", name, None
                if sub == "versions" and m == "GET":
                    return self.list_versions, "list", name, None
                if sub == "backup" and m == "POST":
                    return self.backup, "backup", name, None
                if sub == "rotate" and m == "POST":
                    return self.rotate, "rotate", name, None
                if sub == "rotationpolicy" and m == "GET":
                    return self.get_rotation_policy, "getrotationpolicy", name, None
                if sub == "rotationpolicy" and m == "PUT":
                    return self.set_rotation_policy, "setrotationpolicy", name, None
                if sub.lower() in CRYPTO_OPS and m == "POST":    # the docs' unversioned form [I]
                    return self.crypto, CRYPTO_OPS[sub.lower()], name, None
                if VERSION_RE.match(sub) and m == "GET":
                    return self.get_key, "get", name, sub
                if VERSION_RE.match(sub) and m == "PATCH":
                    return self.update_key, "update", name, sub
                return None
            if n == 4 and m == "POST" and segs[3].lower() in CRYPTO_OPS and \
                    (VERSION_RE.match(segs[2]) or segs[2] == ""):
                return self.crypto, CRYPTO_OPS[segs[3].lower()], segs[1], segs[2] or None
            return None
        if segs == ["rng"] and m == "POST" and vault.kind == "mhsm":   # Managed HSM only
            return self.rng, "rng", None, None
        if segs[0] == "deletedkeys":
            if n == 1 and m == "GET":
                return self.list_deleted, "listdeleted", None, None
            if n == 2 and m == "GET":
                return self.get_deleted, "getdeleted", segs[1], None
            if n == 2 and m == "DELETE":
                return self.purge, "purge", segs[1], None
            if n == 3 and segs[2] == "recover" and m == "POST":
                return self.recover, "recover", segs[1], None
        return None

    def _rate(self, req, vault, store, op, name):
        """Charge the rate limiter (limits.py) before anything else runs."""
        if not self.faults.rate.get("enabled"):
            return
        ver = None
        if name:
            rec, st = store.get(name)
            if rec is not None and st == ACTIVE:
                ver = rec["versions"][-1]
        if vault.kind == "mhsm":
            charge = limits.mhsm_charge(op, ver["jwk"] if ver else None)
        else:
            hsm = ver is not None and ver["kty"].endswith("-HSM")
            bits = None
            if op in ("create", "import"):
                hsm = self._requested_hsm(req, op)
            elif ver is not None and ver["jwk"]["kty"] == "RSA":
                bits = keycrypto.key_size_bits(ver["jwk"])
            charge = limits.vault_charge(op, hsm, bits)
        if charge is not None:
            self.faults.rate_check(vault.name, charge)

    @staticmethod
    def _requested_hsm(req, op):
        """HSM vs software CREATE, by the requested kty (-HSM suffix, Hsm flag or a BYOK blob)."""
        try:
            body = json.loads(req.body or b"{}")
            key = body.get("key") if op == "import" else body
            return str(key.get("kty", "")).endswith("-HSM") or body.get("Hsm") is True or bool(key.get("key_hsm"))
        except (ValueError, AttributeError):
            return False

    # ================================================================ shapes
    def kid(self, vault, name, version=None):
        return "%s/keys/%s%s" % (vault.base_url, name, "/" + version if version else "")

    def attributes(self, vault, ver):
        a = {k: v for k, v in ver["attributes"].items() if v is not None}
        a["recoveryLevel"] = vault.recovery_level()
        if vault.soft_delete:
            a["recoverableDays"] = vault.recoverable_days()
        return a

    def bundle(self, vault, rec, ver):
        key = {"kid": self.kid(vault, rec["name"], ver["version"]), "kty": ver["kty"],
               "key_ops": list(ver["key_ops"])}
        key.update(keycrypto.public_jwk(ver["jwk"]))
        out = {"key": key, "attributes": self.attributes(vault, ver)}
        if ver.get("tags"):
            out["tags"] = dict(ver["tags"])
        if ver.get("release_policy"):
            out["release_policy"] = ver["release_policy"]
        return out

    def deleted_fields(self, vault, rec):
        d = rec["deleted"]
        return {"recoveryId": "%s/deletedkeys/%s" % (vault.base_url, rec["name"]),
                "deletedDate": d["deletedDate"], "scheduledPurgeDate": d["scheduledPurgeDate"]}

    def item(self, vault, rec, ver, versioned=False):
        out = {"kid": self.kid(vault, rec["name"], ver["version"] if versioned else None),
               "attributes": self.attributes(vault, ver)}
        if ver.get("tags"):
            out["tags"] = dict(ver["tags"])
        return out

    def page(self, req, vault, items, path):
        """One page of a list plus an absolute nextLink with $skiptoken."""
        try:
            top = int(req.query.get("maxresults") or MAX_PAGE)
        except ValueError:
            raise bad_parameter("maxresults must be an integer between 1 and 25.") from None
        if not 1 <= top <= MAX_PAGE:
            raise bad_parameter("Invalid maxresults %d; it must be between 1 and 25." % top)
        skip = 0
        if req.query.get("$skiptoken"):
            try:
                skip = int(json.loads(b64_decode_any(req.query["$skiptoken"]))["o"])
            except (ValueError, KeyError, TypeError, JoseError):
                raise bad_parameter("Invalid $skiptoken.") from None
        chunk = items[skip:skip + top]
        nxt = None
        if skip + top < len(items):
            tok = b64url_encode(json.dumps({"o": skip + top}).encode())
            # Built on the vault's own host name with :443, as the service does, whatever name
            # (an alias in front of a private endpoint) the client used (reference §11).
            nxt = "%s:443%s?api-version=%s&$skiptoken=%s&maxresults=%d" % (
                vault.base_url, path, req.query.get("api-version"), tok, top)
        return Response(200, {"value": chunk, "nextLink": nxt})

    # ================================================================ helpers
    def _active(self, store, name, version=None):
        rec, st = store.get(name)
        if rec is None or st != ACTIVE:
            raise key_not_found(name)
        ver = store.find_version(rec, version)
        if ver is None:
            raise key_not_found("%s/%s" % (name, version))
        return rec, ver

    def _check_name_free(self, store, name):
        """A new key or a new version may be written under `name`?
        Returns the existing active record, if any."""
        rec, st = store.get(name)
        if st == DELETING:
            raise kv_error(409, "Conflict", "Key %s is currently being deleted and cannot be re-created; "
                                            "retry later." % name, inner="ObjectIsBeingDeleted")
        if st == DELETED:
            raise kv_error(409, "Conflict",
                           "Key %s is currently in a deleted but recoverable state, and its name cannot be "
                           "reused; in this state, the key can only be recovered or purged." % name,
                           inner="ObjectIsDeletedButRecoverable")
        if st == RECOVERING:
            # [U] message; the service answers 409 ObjectIsBeingDeleted while a recovery runs too.
            raise kv_error(409, "Conflict", "Key %s is currently being recovered; retry later." % name,
                           inner="ObjectIsBeingDeleted")
        return rec

    def _check_tier(self, vault, kty):
        """Which key types this vault can hold (reference §1.4, §8)."""
        allowed = {"standard": ("RSA", "EC"), "premium": ("RSA", "EC", "RSA-HSM", "EC-HSM"),
                   "Standard_B1": ("RSA-HSM", "EC-HSM", "oct-HSM")}[vault.sku]
        if kty not in allowed:
            # [U] The real text differs by case; 400 BadParameter is what the
            # service returns for a key type the vault (SKU) does not support.
            if vault.kind == "vault" and kty in ("RSA-HSM", "EC-HSM"):
                raise bad_parameter("HSM-protected keys (%s) are not supported by this key vault SKU "
                                    "(standard). Use a premium key vault or a managed HSM." % kty)
            raise bad_parameter("Key type %s is not supported by this %s." %
                                (kty, "managed HSM" if vault.kind == "mhsm" else "key vault"))

    @staticmethod
    def _check_key_ops(ops, kty):
        if ops is None:
            return None
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise bad_parameter("key_ops must be a list of strings.")
        norm = []
        for o in ops:
            match = [x for x in keycrypto.ALL_OPS if x.lower() == o.lower()]
            if not match:
                raise bad_parameter("Invalid key operation '%s'." % o)
            if match[0] not in norm:
                norm.append(match[0])
        if "import" in norm and len(norm) > 1:
            raise bad_parameter("The key operation 'import' is mutually exclusive with all other key "
                                "operations.")
        if "import" in norm and kty != "RSA-HSM":
            raise bad_parameter("Only RSA-HSM keys can be key exchange keys (key_ops ['import']).")
        return norm

    @staticmethod
    def _attrs_in(body, old=None):
        a = dict(old or {"enabled": True, "exportable": False})
        src = body.get("attributes") or {}
        if not isinstance(src, dict):
            raise bad_parameter("attributes must be an object.")
        for k in ("enabled", "exportable"):
            if k in src and src[k] is not None:
                if not isinstance(src[k], bool):
                    raise bad_parameter("attributes.%s must be a boolean." % k)
                a[k] = src[k]
        for k in ("nbf", "exp"):
            if k in src:
                if src[k] is not None and not isinstance(src[k], int):
                    raise bad_parameter("attributes.%s must be an integer (Unix time)." % k)
                a[k] = src[k]
        if a.get("exportable") and not body.get("release_policy") and not (old and old.get("exportable")):
            raise bad_parameter("AKV.SKR.1004: Exportable keys must have release policy.")
        return a

    @staticmethod
    def _tags_in(tags):
        if tags is None:
            return {}
        if not isinstance(tags, dict) or len(tags) > 15 or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 256 and len(v) <= 256
                for k, v in tags.items()):
            raise bad_parameter("Invalid tags: at most 15 string tags, names and values up to 256 "
                                "characters.")
        return dict(tags)

    def _write_version(self, store, rec, name, kty, jwk, key_ops, body, origin="create"):
        now = _now()
        attrs = self._attrs_in(body)
        attrs.update({"created": now, "updated": now})
        ver = {"version": uuid.uuid4().hex, "kty": kty, "jwk": jwk,
               "key_ops": key_ops or keycrypto.default_key_ops(kty), "attributes": attrs,
               "tags": self._tags_in(body.get("tags")), "origin": origin}
        if body.get("release_policy"):
            ver["release_policy"] = body["release_policy"]
        if rec is None:
            rec = {"name": name, "versions": [], "deleted": None, "recoveringUntil": None}
            store.keys[name.lower()] = rec
        rec["versions"].append(ver)
        store.save()
        return rec, ver

    def _generate(self, kty, key_size=None, crv=None, public_exponent=None):
        """New key material. With the setting "rsaKeyPool": N > 0, RSA keys of each size come from N
        made once and then handed out in turn: for benchmarks, since Python makes an RSA-4096 key in
        a second or more of CPU, where Azure's HSMs make a vault's ten per 10 s without it showing.
        Azure makes every key anew; so does the emulator by default."""
        n = int(self.config.settings.get("rsaKeyPool") or 0)
        if n <= 0 or keycrypto.base_kty(kty) != "RSA":
            return keycrypto.generate(kty, key_size, crv, public_exponent)
        k = (int(key_size or 2048), int(public_exponent or 65537))
        with self._pool_lock:
            pool = self._rsa_pool.setdefault(k, [])
            if len(pool) < n:
                pool.append(keycrypto.generate(kty, key_size, crv, public_exponent))
                return dict(pool[-1])
            self._pool_turn[k] = (self._pool_turn.get(k, -1) + 1) % n
            return dict(pool[self._pool_turn[k]])

    # ================================================================ operations
    def create_key(self, req, vault, store, claims, name, version, op):
        body = req.json()
        kty = body.get("kty")
        if not isinstance(kty, str):
            raise bad_parameter("The parameter 'kty' is required.")
        if vault.kind == "mhsm" and kty in ("RSA", "EC", "oct"):
            # A managed HSM makes RSA / EC requests as RSA-HSM / EC-HSM (azure-sdk-for-js
            # recordings, reference §11) [C]; oct as oct-HSM likewise [I].
            kty += "-HSM"
        self._check_tier(vault, kty)
        if body.get("public_exponent") is not None and vault.kind != "mhsm":
            raise bad_parameter("public_exponent is only supported by managed HSM.")
        key_ops = self._check_key_ops(body.get("key_ops"), kty)
        self._attrs_in(body)
        self._tags_in(body.get("tags"))
        rec = self._check_name_free(store, name)
        jwk = self._generate(kty, body.get("key_size"), body.get("crv"), body.get("public_exponent"))
        rec, ver = self._write_version(store, rec, name, kty, jwk, key_ops, body)
        return Response(200, self.bundle(vault, rec, ver))

    def import_key(self, req, vault, store, claims, name, version, op):
        body = req.json()
        key = body.get("key")
        origin = "import"
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise bad_parameter("The parameter 'key' with 'kty' is required.")
        kty = key["kty"]
        hsm_flag = body.get("Hsm")
        if key.get("key_hsm"):
            # BYOK: kty must name the wrapped key's type; plain RSA/EC targets
            # are allowed "for testing" and land in software (reference §1.4).
            if vault.kind == "mhsm" and not kty.endswith("-HSM"):
                kty += "-HSM"
            self._check_tier(vault, kty)
            if keycrypto.base_kty(kty) == "EC" and key.get("crv") not in keycrypto.CURVES:
                raise bad_parameter("The parameter 'crv' is required for EC keys; got %r." % key.get("crv"))
            key_ops = self._check_key_ops(key.get("key_ops"), kty)
            self._attrs_in(body)
            self._tags_in(body.get("tags"))
            rec = self._check_name_free(store, name)
            jwk = self._byok(vault, store, key, kty)
            origin = "byok"
        else:
            base = keycrypto.base_kty(kty)
            # Software import: an -HSM kty or "Hsm": true asks for HSM protection
            # [I]; a managed HSM imports everything into the HSM ("soft form").
            if vault.kind == "mhsm" or hsm_flag is True or kty.endswith("-HSM"):
                kty = base + "-HSM"
            else:
                kty = base
            self._check_tier(vault, kty)
            key_ops = self._check_key_ops(key.get("key_ops"), kty)
            self._attrs_in(body)
            self._tags_in(body.get("tags"))
            jwk = keycrypto.import_jwk(key)
            if jwk["kty"] == "RSA" and keycrypto.key_size_bits(jwk) == 1024 and vault.kind == "mhsm":
                raise bad_parameter("RSA 1024-bit keys are not supported by managed HSM.")
            rec = self._check_name_free(store, name)
        rec, ver = self._write_version(store, rec, name, kty, jwk, key_ops, body, origin)
        return Response(200, self.bundle(vault, rec, ver))

    def _byok(self, vault, store, key, kty):
        """Resolve the KEK named in the blob and unwrap the target key."""
        kek_kid = keycrypto.byok_header(key["key_hsm"])
        m = re.match(r"^https://([^/:]+)(?::443)?/keys/([0-9A-Za-z-]+)(?:/([0-9a-fA-F]{32}))?/?$", kek_kid)
        if not m:
            raise bad_parameter("The key exchange key identifier '%s' is not a valid key identifier." % kek_kid)
        if m.group(1).lower() != vault.host:
            raise bad_parameter("The key exchange key '%s' must be in the same %s as the imported key."
                                % (kek_kid, "managed HSM" if vault.kind == "mhsm" else "key vault"))
        kek_rec, st = store.get(m.group(2))
        kek = store.find_version(kek_rec, m.group(3)) if kek_rec is not None and st == ACTIVE else None
        if kek is None:
            raise bad_parameter("The key exchange key '%s' was not found." % kek_kid)
        if kek["kty"] != "RSA-HSM" or kek["key_ops"] != ["import"]:
            raise bad_parameter("The key '%s' is not a valid key exchange key: it must be an RSA-HSM key "
                                "with key_ops exactly ['import']." % kek_kid)
        if not kek["attributes"].get("enabled", True):
            raise kv_error(403, "Forbidden", "Operation import is not allowed on a disabled key.")
        return keycrypto.byok_unwrap(key["key_hsm"], kek["jwk"], kty, key.get("crv"))

    def get_key(self, req, vault, store, claims, name, version, op):
        rec, ver = self._active(store, name, version)
        return Response(200, self.bundle(vault, rec, ver))

    def list_keys(self, req, vault, store, claims, name, version, op):
        items = [self.item(vault, r, r["versions"][-1]) for r in store.records(ACTIVE)]
        return self.page(req, vault, items, "/keys")

    def list_versions(self, req, vault, store, claims, name, version, op):
        rec, _ = self._active(store, name)
        items = [self.item(vault, rec, v, versioned=True) for v in rec["versions"]]
        return self.page(req, vault, items, "/keys/%s/versions" % rec["name"])

    def update_key(self, req, vault, store, claims, name, version, op):
        body = req.json()
        rec, ver = self._active(store, name, version)
        key_ops = self._check_key_ops(body.get("key_ops"), ver["kty"])
        attrs = self._attrs_in(body, ver["attributes"])
        tags = self._tags_in(body["tags"]) if "tags" in body else None
        if key_ops is not None:
            ver["key_ops"] = key_ops
        ver["attributes"] = attrs
        ver["attributes"]["updated"] = _now()
        if tags is not None:
            ver["tags"] = tags
        store.save()
        return Response(200, self.bundle(vault, rec, ver))

    def delete_key(self, req, vault, store, claims, name, version, op):
        rec, ver = self._active(store, name)
        out = self.bundle(vault, rec, ver)
        if not vault.soft_delete:
            # Final deletion; no recoveryId tells clients soft delete is off.
            store.remove(name)
            store.save()
            return Response(200, out)
        now = time.time()
        rec["deleted"] = {"deletedDate": int(now),
                          "scheduledPurgeDate": int(now) + vault.retention_days * 86400,
                          "readyAt": now + vault.delete_delay}
        rec["recoveringUntil"] = None
        store.save()
        out.update(self.deleted_fields(vault, rec))
        return Response(200, out)

    def _require_soft_delete(self, vault):
        if not vault.soft_delete:
            # [U] exact text; the service rejects deleted-key operations on a
            # vault without soft delete.
            raise bad_parameter("Operation is not allowed because soft delete is not enabled on this vault.")

    def get_deleted(self, req, vault, store, claims, name, version, op):
        self._require_soft_delete(vault)
        rec, st = store.get(name)
        if st != DELETED:   # includes "still being deleted": 404 until done [C]
            raise deleted_key_not_found(name)
        out = self.bundle(vault, rec, rec["versions"][-1])
        out.update(self.deleted_fields(vault, rec))
        return Response(200, out)

    def list_deleted(self, req, vault, store, claims, name, version, op):
        self._require_soft_delete(vault)
        items = []
        for r in store.records(DELETED):
            it = self.item(vault, r, r["versions"][-1])
            it.update(self.deleted_fields(vault, r))
            items.append(it)
        return self.page(req, vault, items, "/deletedkeys")

    def _deleted_record(self, vault, store, name):
        """The soft-deleted key `name`, for purge and recover: 409 while its deletion runs."""
        self._require_soft_delete(vault)
        rec, st = store.get(name)
        if st == DELETING:
            # Recorded (azure-sdk-for-js): {"code":"Conflict","message":"Key is currently being
            # deleted.","innererror":{"code":"ObjectIsBeingDeleted"}}.
            raise kv_error(409, "Conflict", "Key is currently being deleted.", inner="ObjectIsBeingDeleted")
        if st != DELETED:
            raise deleted_key_not_found(name)
        return rec

    def purge(self, req, vault, store, claims, name, version, op):
        self._deleted_record(vault, store, name)
        if vault.purge_protection:
            raise kv_error(403, "Forbidden",
                           'Operation "purge" is not allowed because purge protection is enabled for this '
                           'vault. Key Vault service will automatically purge it after the retention period '
                           'has passed.')
        store.remove(name)
        store.save()
        return Response(204)

    def recover(self, req, vault, store, claims, name, version, op):
        rec = self._deleted_record(vault, store, name)
        rec["deleted"] = None
        # Recovery is asynchronous too: GET /keys/{n} answers 404 until done.
        rec["recoveringUntil"] = time.time() + vault.delete_delay
        store.save()
        return Response(200, self.bundle(vault, rec, rec["versions"][-1]))

    def rotate(self, req, vault, store, claims, name, version, op):
        """A new version of the same kty, size and curve, with the latest version's key_ops and
        tags, and exp from the rotation policy's expiryTime (keys.json RotateKey)."""
        rec, ver = self._active(store, name)
        jwk = ver["jwk"]
        if ver["key_ops"] == ["import"]:
            raise bad_parameter("Key exchange keys cannot be rotated.")
        if ver.get("origin") == "byok":
            # [U] Learn (how-to-configure-key-rotation) says a key imported from a local HSM cannot
            # be rotated by Key Vault, and suggests the near-expiry event to rotate it at its source;
            # what the service answers to rotate on such a key is not published. We refuse, as a
            # new version made in the vault would not be the HSM's key.
            raise bad_parameter("Key %s was imported from an HSM (BYOK) and cannot be rotated by the key vault: "
                                "rotate it in the source HSM and import the new key as a new version." % name)
        size = keycrypto.key_size_bits(jwk) if jwk["kty"] != "EC" else None
        new = self._generate(ver["kty"], size, jwk.get("crv"))
        now = _now()
        attrs = {"enabled": True}
        exp = rotation.expiry_for_new_version(rec.get("rotationPolicy"), now)
        if exp is not None:
            attrs["exp"] = exp
        body = {"attributes": attrs, "tags": ver.get("tags")}
        rec, nv = self._write_version(store, rec, rec["name"], ver["kty"], new, list(ver["key_ops"]), body,
                                      "rotate")
        return Response(200, self.bundle(vault, rec, nv))

    def get_rotation_policy(self, req, vault, store, claims, name, version, op):
        rec, _ = self._active(store, name)
        return Response(200, rotation.to_json(self.kid(vault, rec["name"]), rec.get("rotationPolicy")))

    def set_rotation_policy(self, req, vault, store, claims, name, version, op):
        rec, _ = self._active(store, name)
        policy = rotation.validate(req.json())
        now = _now()
        old = rec.get("rotationPolicy")
        policy["created"] = old["created"] if old else now
        policy["updated"] = now
        rec["rotationPolicy"] = policy
        store.save()
        return Response(200, rotation.to_json(self.kid(vault, rec["name"]), policy))

    def rng(self, req, vault, store, claims, name, version, op):
        """POST /rng {"count": 1..128} -> {"value": base64url} (Managed HSM, keys.json GetRandomBytes)."""
        count = req.json().get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 128:
            raise bad_parameter("count must be an integer between 1 and 128; got %r." % (count,))
        return Response(200, {"value": b64url_encode(os.urandom(count))})

    # ---------------------------------------------------------------- backup
    def backup(self, req, vault, store, claims, name, version, op):
        rec, _ = self._active(store, name)
        payload = json.dumps({"v": 1, "subscription": vault.subscription_id, "kind": vault.kind,
                              "hsm": vault.is_hsm_capable, "record": rec}).encode()
        nonce = os.urandom(12)
        blob = b"AKVEMU-BACKUP-1" + nonce + AESGCM(self.backup_key).encrypt(nonce, payload, b"akv-backup")
        return Response(200, {"value": b64url_encode(blob)})

    def restore(self, req, vault, store, claims, name, version, op):
        body = req.json()
        try:
            blob = b64_decode_any(body.get("value") or "")
            if not blob.startswith(b"AKVEMU-BACKUP-1"):
                raise ValueError
            raw = blob[len(b"AKVEMU-BACKUP-1"):]
            data = json.loads(AESGCM(self.backup_key).decrypt(raw[:12], raw[12:], b"akv-backup"))
        except Exception:   # any decoding/authentication failure: the blob is not ours
            raise bad_parameter("Backup blob contains invalid or corrupt version.") from None
        if data["subscription"] != vault.subscription_id:
            # Backups restore only within the same subscription (and geography).
            raise kv_error(403, "Forbidden", "Restore of a key from a different subscription is not "
                                             "allowed.")
        rec = data["record"]
        if data["kind"] != vault.kind:
            raise bad_parameter("A backup from a %s cannot be restored into a %s." % (
                "managed HSM" if data["kind"] == "mhsm" else "key vault",
                "managed HSM" if vault.kind == "mhsm" else "key vault"))
        for v in rec["versions"]:
            self._check_tier(vault, v["kty"])
        existing, st = store.get(rec["name"])
        if existing is not None:
            raise kv_error(409, "Conflict", "There was a conflict restoring the key '%s'. This could happen "
                                            "if the key name is in use, including by a deleted key."
                           % self.kid(vault, rec["name"]))
        rec["deleted"] = None
        rec["recoveringUntil"] = None
        store.keys[rec["name"].lower()] = rec
        store.save()
        return Response(200, self.bundle(vault, rec, rec["versions"][-1]))

    # ---------------------------------------------------------------- crypto
    def crypto(self, req, vault, store, claims, name, version, op):
        body = req.json()
        rec, ver = self._active(store, name, version)
        a = ver["attributes"]
        now = _now()
        opname = {"wrapKey": "wrapKey", "unwrapKey": "unwrapKey"}.get(op, op)
        if not a.get("enabled", True):
            raise kv_error(403, "Forbidden", "Operation %s is not allowed on a disabled key." % opname)
        if (a.get("nbf") and now < a["nbf"]) or (a.get("exp") and now > a["exp"]):
            raise kv_error(403, "Forbidden", "Operation %s is not allowed on an expired or not yet valid "
                                             "key." % opname)
        if op not in ver["key_ops"]:
            # [U] exact status/text; the service refuses operations the key's
            # key_ops do not list.
            raise kv_error(403, "Forbidden", "Operation %s is not permitted on this key." % opname)
        alg = body.get("alg")
        if not isinstance(alg, str):
            raise bad_parameter("The parameter 'alg' is required.")

        def field(k, required=True):
            v = body.get(k)
            if v is None:
                if required:
                    raise bad_parameter("The parameter '%s' is required." % k)
                return None
            try:
                return b64_decode_any(v)
            except JoseError:
                raise bad_parameter("The parameter '%s' is not valid base64url." % k) from None

        jwk = ver["jwk"]
        live = store.live_key(rec["name"], ver)
        kid = self.kid(vault, rec["name"], ver["version"])
        if op == "sign":
            return Response(200, {"kid": kid, "value": b64url_encode(keycrypto.sign(jwk, live, alg,
                                                                                    field("value")))})
        if op == "verify":
            ok = keycrypto.verify(jwk, live, alg, field("digest"), field("value"))
            return Response(200, {"value": ok})
        if op in ("encrypt", "wrapKey"):
            res = keycrypto.encrypt(jwk, live, alg, field("value"), field("iv", False), field("aad", False))
        else:
            res = keycrypto.decrypt(jwk, live, alg, field("value"), field("iv", False), field("aad", False),
                                    field("tag", False))
        out = {"kid": kid}
        out.update({k: b64url_encode(v) for k, v in res.items()})
        return Response(200, out)
