"""Authorization: access policies or RBAC, as each vault is configured.

Every data-plane operation has an access-policy permission name (reference
§10, [C]) and an RBAC data action. Vault data actions follow the resource
provider operations list [C]: purge and recover are keys/purge/action and
keys/recover/action (there is no vaults/deletedKeys/... action), reading a
deleted key is keys/read [I], rotation policies are keyrotationpolicies/read
and /write. Built-in roles as published (Crypto Officer: keys/* and
keyrotationpolicies/*; Crypto User: read + crypto operations). Managed HSM
data actions and roles follow built-in-roles.md and the role definitions
the service lists (Crypto User includes rng/action); which Managed HSM data
action guards the rotation policy is [U] (keys read / write here).

A grant can be given at run time with a propagation delay (admin endpoint,
POST /_admin/grants): until it has propagated the service answers the same
403 as without it. An RBAC 403 always says "If role assignments, deny
assignments or role definitions were changed recently, please observe
propagation time." [C]; that sentence is the only sign Azure gives that a
denial may be a grant still propagating. An access-policy 403 carries no
such sentence [C], so a client cannot tell it apart from a real denial.
"""
import time
import fnmatch

from .errors import kv_error

# op -> (access-policy permission, vault data action, managed HSM data action)
_KV = "Microsoft.KeyVault/vaults/"
_HSM = "Microsoft.KeyVault/managedHsm/"
OPS = {
    "get": ("get", _KV + "keys/read", _HSM + "keys/read/action"),
    "list": ("list", _KV + "keys/read", _HSM + "keys/read/action"),
    "create": ("create", _KV + "keys/create/action", _HSM + "keys/create"),
    "import": ("import", _KV + "keys/import/action", _HSM + "keys/import/action"),
    "update": ("update", _KV + "keys/update/action", _HSM + "keys/write/action"),
    "delete": ("delete", _KV + "keys/delete", _HSM + "keys/delete"),
    "getdeleted": ("get", _KV + "keys/read", _HSM + "keys/deletedKeys/read/action"),
    "listdeleted": ("list", _KV + "keys/read", _HSM + "keys/deletedKeys/read/action"),
    "recover": ("recover", _KV + "keys/recover/action", _HSM + "keys/deletedKeys/recover/action"),
    "purge": ("purge", _KV + "keys/purge/action", _HSM + "keys/deletedKeys/delete"),
    "backup": ("backup", _KV + "keys/backup/action", _HSM + "keys/backup/action"),
    "restore": ("restore", _KV + "keys/restore/action", _HSM + "keys/restore/action"),
    "rotate": ("rotate", _KV + "keys/rotate/action", _HSM + "keys/rotate/action"),
    "getrotationpolicy": ("getrotationpolicy", _KV + "keyrotationpolicies/read", _HSM + "keys/read/action"),
    "setrotationpolicy": ("setrotationpolicy", _KV + "keyrotationpolicies/write", _HSM + "keys/write/action"),
    "rng": ("rng", _KV + "rng/action", _HSM + "rng/action"),
    "sign": ("sign", _KV + "keys/sign/action", _HSM + "keys/sign/action"),
    "verify": ("verify", _KV + "keys/verify/action", _HSM + "keys/verify/action"),
    "encrypt": ("encrypt", _KV + "keys/encrypt/action", _HSM + "keys/encrypt/action"),
    "decrypt": ("decrypt", _KV + "keys/decrypt/action", _HSM + "keys/decrypt/action"),
    "wrapKey": ("wrapKey", _KV + "keys/wrap/action", _HSM + "keys/wrap/action"),
    "unwrapKey": ("unwrapKey", _KV + "keys/unwrap/action", _HSM + "keys/unwrap/action"),
}

_CRYPTO_KV = [_KV + "keys/" + a + "/action" for a in ("encrypt", "decrypt", "wrap", "unwrap", "sign", "verify")]
_CRYPTO_HSM = [_HSM + "keys/" + a + "/action" for a in ("encrypt", "decrypt", "wrap", "unwrap", "sign", "verify")]

# Built-in roles: name -> (role definition GUID, data-action patterns)
ROLES = {
    "key vault administrator": ("00482a5a-887f-4fb3-b363-3b7fe8e74483", [_KV + "*"]),
    "key vault crypto officer": ("14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
                                 [_KV + "keys/*", _KV + "keyrotationpolicies/*"]),
    "key vault crypto user": ("12338af0-0e69-4776-bea7-57ae8d297424",
                              [_KV + "keys/read", _KV + "keys/update/action", _KV + "keys/backup/action"]
                              + _CRYPTO_KV),
    "key vault reader": ("21090545-7ca7-4776-b22c-e363652d74d2", [_KV + "keys/read"]),
    "managed hsm crypto user": ("21dbd100-6940-42c2-9190-5d6cb909625b",
                                [_HSM + "keys/read/action", _HSM + "keys/write/action", _HSM + "keys/create",
                                 _HSM + "keys/import/action", _HSM + "keys/delete",
                                 _HSM + "keys/backup/action", _HSM + "keys/restore/action",
                                 _HSM + "keys/rotate/action", _HSM + "rng/action"] + _CRYPTO_HSM),
    # The role table grants deletedKeys/read to the Officer only; the recovery
    # page says the User can list deleted keys too (reference §8, conflict).
    # We follow the role table.
    "managed hsm crypto officer": ("515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
                                   [_HSM + "keys/read/action", _HSM + "keys/deletedKeys/*",
                                    _HSM + "keys/export/action"]),
    "managed hsm administrator": ("a290e904-7015-4bba-90c8-60543313cdb4", []),
}
ROLE_BY_ID = {rid: name for name, (rid, _) in ROLES.items()}


def _role_actions(role):
    r = str(role).lower()
    r = r.rsplit("/", 1)[-1] if "/" in r else r   # accept full roleDefinitionId paths
    name = ROLE_BY_ID.get(r, r)
    return ROLES.get(name, (None, []))[1]


def caller(claims):
    return "appid=%s;oid=%s;iss=%s" % (claims.get("appid"), claims.get("oid"), claims.get("iss"))


def _propagated(grant, now):
    return grant.get("effectiveAt", 0) <= now


def check(vault, claims, op, key_name=None):
    """Raise the service's 403 unless the token's principal may do `op`."""
    perm, kv_action, hsm_action = OPS[op]
    oid = str(claims.get("oid", "")).lower()
    appid = str(claims.get("appid", "")).lower()
    now = time.time()
    if vault.rbac:
        action = hsm_action if vault.kind == "mhsm" else kv_action
        for ra in list(vault.role_assignments):
            if not _propagated(ra, now):
                continue
            if str(ra.get("principalId", "")).lower() not in (oid, appid):
                continue
            if any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in _role_actions(ra.get("role", ""))):
                return
        resource = vault.arm_id().lower() + ("/keys/" + key_name if key_name else "")
        raise kv_error(403, "Forbidden",
                       "Caller is not authorized to perform action on resource.\r\nIf role assignments, "
                       "deny assignments or role definitions were changed recently, please observe "
                       "propagation time.\r\nCaller: %s\r\nAction: '%s'\r\nResource: '%s'\r\n"
                       "Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\n"
                       "Vault: %s;location=%s\r\n" % (caller(claims), action, resource, vault.name,
                                                      vault.location),
                       inner="ForbiddenByRbac")
    for ap in list(vault.access_policies):
        if not _propagated(ap, now):
            continue
        if str(ap.get("objectId", "")).lower() != oid:
            continue
        if ap.get("tenantId") and str(ap["tenantId"]).lower() != str(claims.get("tid", "")).lower():
            continue
        if ap.get("applicationId") and str(ap["applicationId"]).lower() != appid:
            continue
        granted = {p.lower() for p in ap.get("permissions", {}).get("keys", [])}
        # Permission names compare case-insensitively [U]; "all" grants every one.
        if "all" in granted or perm.lower() in granted:
            return
    raise kv_error(403, "Forbidden",
                   "The user, group or application '%s' does not have keys %s permission on key vault "
                   "'%s;location=%s'. For help resolving this issue, please see "
                   "https://go.microsoft.com/fwlink/?linkid=2125287" % (caller(claims), perm, vault.name,
                                                                        vault.location),
                   inner="AccessDenied")


def add_grant(vault, grant, propagation_seconds=0.0):
    """A role assignment ({"principalId", "role"}) or an access policy ({"objectId",
    "permissions"}) that takes effect `propagation_seconds` from now. Returns it."""
    g = {k: v for k, v in grant.items() if k not in ("vault", "propagationSeconds")}
    g["effectiveAt"] = time.time() + float(propagation_seconds)
    if "role" in g:
        if not _role_actions(g["role"]) and str(g["role"]).lower() != "managed hsm administrator":
            raise ValueError("unknown role %r" % g["role"])
        if not g.get("principalId"):
            raise ValueError("a role assignment needs principalId")
        vault.role_assignments.append(g)
    else:
        if not g.get("objectId") or not isinstance(g.get("permissions"), dict):
            raise ValueError("an access policy needs objectId and permissions")
        vault.access_policies.append(g)
    return g
