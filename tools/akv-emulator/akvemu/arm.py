"""ARM (Azure Resource Manager) discovery of vaults and managed HSMs
(reference §7): list by subscription or resource group, get one, with
paging via $top / $skiptoken / nextLink. Errors are ARM CloudErrors.

Also the generic resource list `az keyvault list` calls (reference §11):
GET /subscriptions/{id}/resources?$filter=resourceType eq 'Microsoft.KeyVault/vaults'
(api-version 2015-11-01), whose items carry id, name, type, location and
tags but no properties [C]. Only resourceType filters (joined by "or") are
understood; the subscription's other resources are not modelled, so without
a filter it lists the key vaults and managed HSMs.
"""
import json
import re
import time
import urllib.parse

from .config import ARM_HOSTS, CLOUDS
from .entra import TokenProblem
from .errors import kv_error
from .jose import JoseError, b64_decode_any, b64url_encode
from .web import Response

RESOURCES_ROUTE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?/resources$", re.I)
FILTER_TERM = re.compile(r"^\s*resourceType\s+eq\s+'([^']*)'\s*$", re.I)
RESOURCE_TYPES = {"microsoft.keyvault/vaults": "vault", "microsoft.keyvault/managedhsms": "mhsm"}
ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?"
    r"/providers/microsoft\.keyvault/(?P<type>vaults|managedhsms)(?:/(?P<name>[^/]+))?/?$", re.I)


def _iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class Arm:
    def __init__(self, config, entra):
        self.config = config
        self.entra = entra
        self.started = time.time()

    def handle(self, req):
        req.service = "arm"
        cloud = CLOUDS[ARM_HOSTS[req.host]]
        claims = self._authenticate(req, cloud)
        if not req.query.get("api-version"):
            raise kv_error(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
        if req.method != "GET":
            raise kv_error(405, "MethodNotAllowed", "The emulator's ARM endpoint is read-only.")
        path = req.path.rstrip("/") or "/"
        if path.lower() == "/subscriptions":
            subs = [self._sub_json(s) for s in self.config.subscriptions.values()
                    if s["tenantId"] == claims.get("tid") and self._may_read(s, claims)]
            return Response(200, {"value": subs, "count": {"type": "Total", "value": len(subs)}})
        m = re.match(r"^/subscriptions/([^/]+)$", path, re.I)
        if m:
            sub = self._subscription(m.group(1), claims)
            return Response(200, self._sub_json(sub))
        m = RESOURCES_ROUTE.match(path)
        if m:
            return self._resources(req, self._subscription(m.group("sub"), claims), m.group("rg"))
        m = ROUTE.match(path)
        if not m:
            raise kv_error(404, "InvalidResourceType",
                           "The resource type could not be found in the namespace 'Microsoft.KeyVault' for "
                           "api version '%s'." % req.query["api-version"])
        sub = self._subscription(m.group("sub"), claims)
        kind = "mhsm" if m.group("type").lower() == "managedhsms" else "vault"
        vaults = [v for v in (sub["managedHsms"] if kind == "mhsm" else sub["vaults"])
                  if not m.group("rg") or v.resource_group.lower() == m.group("rg").lower()]
        if m.group("rg") and not any(v.resource_group.lower() == m.group("rg").lower()
                                     for v in sub["vaults"] + sub["managedHsms"]):
            raise kv_error(404, "ResourceGroupNotFound",
                           "Resource group '%s' could not be found." % m.group("rg"))
        if m.group("name"):
            for v in vaults:
                if v.name.lower() == m.group("name").lower():
                    return Response(200, self._vault_json(v))
            raise kv_error(404, "ResourceNotFound",
                           "The Resource 'Microsoft.KeyVault/%s/%s' under resource group '%s' was not "
                           "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                           % (m.group("type"), m.group("name"), m.group("rg")))
        items = [self._vault_json(v) for v in sorted(vaults, key=lambda v: v.name.lower())]
        return self._page(req, items)

    def _resources(self, req, sub, rg):
        kinds = {"vault", "mhsm"}
        flt = req.query.get("$filter")
        if flt:
            kinds = set()
            for term in re.split(r"\s+or\s+", flt, flags=re.I):
                m = FILTER_TERM.match(term)
                if not m:
                    # [U] text; ARM refuses a filter it cannot evaluate with 400 InvalidFilterInQueryString.
                    raise kv_error(400, "InvalidFilterInQueryString",
                                   "The $filter '%s' is not supported by the emulator: use resourceType eq "
                                   "'Microsoft.KeyVault/vaults' (or managedHSMs), joined by 'or'." % flt)
                kind = RESOURCE_TYPES.get(m.group(1).lower())
                if kind:
                    kinds.add(kind)
        vaults = [v for v in sub["vaults"] + sub["managedHsms"] if v.kind in kinds and
                  (not rg or v.resource_group.lower() == rg.lower())]
        items = []
        for v in sorted(vaults, key=lambda v: (v.kind, v.name.lower())):
            it = {"id": v.arm_id(), "name": v.name,
                  "type": "Microsoft.KeyVault/managedHSMs" if v.kind == "mhsm" else "Microsoft.KeyVault/vaults",
                  "location": v.location}
            if v.tags:
                it["tags"] = v.tags
            items.append(it)
        return self._page(req, items)

    # ------------------------------------------------------------ auth
    def _authenticate(self, req, cloud):
        hdr = {"WWW-Authenticate": 'Bearer authorization_uri="https://%s/common/oauth2/authorize", '
                                   'error="invalid_token", error_description="The authentication failed '
                                   'because of missing \'Authorization\' header."' % cloud["login"]}
        try:
            claims = self.entra.validate_access_token(req.headers.get("Authorization"), cloud["arm_resources"])
        except TokenProblem as p:
            code, msg = {
                "missing": ("AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                                                    "missing."),
                "signature": ("InvalidAuthenticationToken", "The access token is invalid."),
                "expired": ("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than "
                                                          "current UTC time."),
                "audience": ("InvalidAuthenticationTokenAudience",
                             "The access token has been obtained for wrong audience or resource '%s'. It "
                             "should exactly match with one of the allowed audiences %s." % (
                                 p.detail, ",".join("'%s/'" % a for a in cloud["arm_resources"]))),
            }[p.kind]
            raise kv_error(401, code, msg, headers=hdr)
        req.client_id = claims.get("appid", "-")
        return claims

    def _may_read(self, sub, claims):
        """Reader access on the subscription: everyone in the tenant unless the
        subscription lists `readers` (object ids or client ids)."""
        readers = sub.get("readers")
        if readers is None:
            return True
        ids = {str(r).lower() for r in readers}
        return str(claims.get("oid", "")).lower() in ids or str(claims.get("appid", "")).lower() in ids

    def _subscription(self, sub_id, claims):
        sub = self.config.subscriptions.get(sub_id.lower())
        if sub is None:
            raise kv_error(404, "SubscriptionNotFound", "The subscription '%s' could not be found." % sub_id)
        if sub["tenantId"] != str(claims.get("tid", "")).lower():
            raise kv_error(401, "InvalidAuthenticationTokenTenant",
                           "The access token is from the wrong issuer '%s'. It must match the tenant "
                           "'https://sts.windows.net/%s/' associated with this subscription. Please use the "
                           "authority (URL) 'https://login.windows.net/%s' to get the token."
                           % (claims.get("iss"), sub["tenantId"], sub["tenantId"]))
        if not self._may_read(sub, claims):
            raise kv_error(403, "AuthorizationFailed",
                           "The client '%s' with object id '%s' does not have authorization to perform action "
                           "'Microsoft.KeyVault/vaults/read' over scope '/subscriptions/%s' or the scope is "
                           "invalid. If access was recently granted, please refresh your credentials."
                           % (claims.get("oid"), claims.get("oid"), sub["subscriptionId"]))
        return sub

    # ------------------------------------------------------------ shapes
    def _sub_json(self, s):
        return {"id": "/subscriptions/" + s["subscriptionId"], "subscriptionId": s["subscriptionId"],
                "tenantId": s["tenantId"], "displayName": s.get("displayName", "Emulated subscription"),
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "MSDN_2014-09-01",
                                         "spendingLimit": "Off"}, "authorizationSource": "RoleBased"}

    def _system_data(self):
        t = _iso(self.started)
        return {"createdBy": "emulator@example.com", "createdByType": "User", "createdAt": t,
                "lastModifiedBy": "emulator@example.com", "lastModifiedByType": "User", "lastModifiedAt": t}

    def _vault_json(self, v):
        if v.kind == "mhsm":
            props = {"tenantId": v.tenant_id, "hsmUri": v.base_url + "/",
                     "initialAdminObjectIds": v.initial_admins, "enableSoftDelete": True,
                     "softDeleteRetentionInDays": v.retention_days,
                     "enablePurgeProtection": v.purge_protection, "publicNetworkAccess": "Enabled",
                     "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [],
                                     "virtualNetworkRules": []},
                     "provisioningState": "Succeeded",
                     "statusMessage": "The Managed HSM is provisioned and ready to use.",
                     "securityDomainProperties": {"activationStatus": "Active",
                                                  "activationStatusMessage": "Your HSM has been activated "
                                                                             "and can be used for "
                                                                             "cryptographic operations."}}
            return {"id": v.arm_id(), "name": v.name, "type": "Microsoft.KeyVault/managedHSMs",
                    "location": v.location, "tags": v.tags, "sku": {"family": "B", "name": "Standard_B1"},
                    "systemData": self._system_data(), "properties": props}
        policies = []
        for ap in v.access_policies:
            p = {"tenantId": ap.get("tenantId", v.tenant_id), "objectId": ap["objectId"],
                 "permissions": {"keys": ap.get("permissions", {}).get("keys", []),
                                 "secrets": ap.get("permissions", {}).get("secrets", []),
                                 "certificates": ap.get("permissions", {}).get("certificates", []),
                                 "storage": ap.get("permissions", {}).get("storage", [])}}
            if ap.get("applicationId"):
                p["applicationId"] = ap["applicationId"]
            policies.append(p)
        props = {"sku": {"family": "A", "name": v.sku}, "tenantId": v.tenant_id, "accessPolicies": policies,
                 "enabledForDeployment": False, "enabledForDiskEncryption": False,
                 "enabledForTemplateDeployment": False, "enableSoftDelete": v.soft_delete,
                 "softDeleteRetentionInDays": v.retention_days, "enableRbacAuthorization": v.rbac,
                 "vaultUri": v.base_url + "/", "provisioningState": "Succeeded",
                 "publicNetworkAccess": "Enabled",
                 "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [],
                                 "virtualNetworkRules": []}}
        if v.purge_protection:   # absent means false [I]
            props["enablePurgeProtection"] = True
        return {"id": v.arm_id(), "name": v.name, "type": "Microsoft.KeyVault/vaults", "location": v.location,
                "tags": v.tags, "systemData": self._system_data(), "properties": props}

    def _page(self, req, items):
        try:
            top = int(req.query.get("$top") or self.config.settings["armPageSize"])
            skip = 0
            if req.query.get("$skiptoken"):
                skip = int(json.loads(b64_decode_any(req.query["$skiptoken"]))["o"])
        except (ValueError, KeyError, TypeError, JoseError):
            raise kv_error(400, "InvalidParameter", "Invalid $top or $skiptoken.") from None
        if top < 1:
            raise kv_error(400, "InvalidParameter", "$top must be a positive integer.")
        out = {"value": items[skip:skip + top]}
        if skip + top < len(items):
            tok = b64url_encode(json.dumps({"o": skip + top}).encode())
            flt = "&$filter=" + urllib.parse.quote(req.query["$filter"]) if req.query.get("$filter") else ""
            out["nextLink"] = "%s%s?api-version=%s%s&$top=%d&$skiptoken=%s" % (
                req.authority(), req.path.rstrip("/"), req.query["api-version"], flt, top, tok)
        return Response(200, out)
