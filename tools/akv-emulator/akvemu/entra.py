"""Entra ID (Azure AD) v2 endpoints: OIDC discovery, instance discovery,
JWKS, and the client-credentials token endpoint (reference §5.2).

Access tokens are RS256 JWTs signed with a key kept in the state directory;
the data plane and ARM check them with validate_access_token().
"""
import datetime
import hmac
import os
import re
import threading
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import jose
from .config import CLOUDS, LOGIN_HOSTS
from .fsutil import atomic_write
from .web import Response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TENANT_PATH = re.compile(r"^/([^/]+)/(.*)$")


def _utc(ts):
    return datetime.datetime.utcfromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%SZ")


def aad_error(status, error, code, description):
    """An Entra error body as the real service returns it (AADSTS codes)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    now = _utc(time.time())
    desc = "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
        code, description, trace, corr, now)
    return Response(status, {"error": error, "error_description": desc, "error_codes": [code],
                             "timestamp": now, "trace_id": trace, "correlation_id": corr,
                             "error_uri": "https://login.microsoftonline.com/error?code=%d" % code})


def known_resources():
    """Resource -> cloud for every resource the token endpoint issues for."""
    out = {}
    for name, c in CLOUDS.items():
        for r in [c["vault_resource"], c["mhsm_resource"]] + c["arm_resources"]:
            out[r.rstrip("/").lower()] = name
    return out


class TokenProblem(Exception):
    """Why an access token was refused: kind in missing, malformed,
    signature, expired, audience, tenant."""

    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Entra:
    def __init__(self, config, state_dir):
        self.config = config
        self.resources = known_resources()
        path = os.path.join(state_dir, "token-signing.key")
        if os.path.exists(path):
            with open(path, "rb") as f:
                self.key = serialization.load_pem_private_key(f.read(), None)
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            atomic_write(path, self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = jose.cert_thumbprints(der)[0]
        self.public_key = self.key.public_key()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ routing
    def handle(self, req):
        req.service = "entra"
        if req.path == "/common/discovery/instance" and req.method == "GET":
            return self.instance_discovery(req)
        m = TENANT_PATH.match(req.path)
        if not m:
            return aad_error(404, "invalid_request", 900561, "The endpoint only accepts POST requests.")
        tenant_ref, rest = m.group(1), m.group(2)
        if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration") \
                and req.method == "GET":
            return self.openid_configuration(req, tenant_ref)
        if rest in ("discovery/v2.0/keys", "discovery/keys") and req.method == "GET":
            return self.jwks()
        if rest == "oauth2/v2.0/token":
            if req.method != "POST":
                return aad_error(405, "invalid_request", 900561,
                                 "The endpoint only accepts POST, OPTIONS requests. Received a %s request."
                                 % req.method)
            return self.token(req, tenant_ref)
        return aad_error(404, "invalid_request", 900561, "Unknown endpoint %s." % req.path)

    # ------------------------------------------------------------ discovery
    def instance_discovery(self, req):
        """What MSAL asks login.microsoftonline.com for an unknown authority host."""
        auth_ep = req.query.get("authorization_endpoint", "")
        m = re.match(r"^https://([^/]+)/([^/]+)/", auth_ep)
        host = m.group(1) if m else req.host
        tenant = m.group(2) if m else "common"
        return Response(200, {
            "tenant_discovery_endpoint":
                "https://%s/%s/v2.0/.well-known/openid-configuration" % (host, tenant),
            "api-version": "1.1",
            "metadata": [
                {"preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
                 "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com",
                             "sts.windows.net"]},
                {"preferred_network": "login.microsoftonline.us", "preferred_cache": "login.microsoftonline.us",
                 "aliases": ["login.microsoftonline.us", "login.usgovcloudapi.net"]},
            ]})

    def openid_configuration(self, req, tenant_ref):
        if tenant_ref.lower() in ("common", "organizations", "consumers"):
            tid = "{tenantid}"
        else:
            t = self.config.find_tenant(tenant_ref)
            if t is None:
                return self._no_tenant(tenant_ref)
            tid = t.tenant_id
        base = "https://%s/%s" % (req.host, tenant_ref if tid == "{tenantid}" else tid)
        return Response(200, {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": base + "/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": "https://%s/%s/v2.0" % (req.host, tid),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": base + "/oauth2/v2.0/authorize",
            "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
            "http_logout_supported": True, "frontchannel_logout_supported": True,
            "end_session_endpoint": base + "/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "kerberos_endpoint": base + "/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.us" if req.host.endswith(".us") else "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    def jwks(self):
        pn = self.public_key.public_numbers()
        return Response(200, {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                                        "n": jose.int_to_b64(pn.n), "e": jose.int_to_b64(pn.e)}]})

    def _no_tenant(self, tenant_ref):
        return aad_error(400, "invalid_tenant", 90002,
                         "Tenant '%s' not found. Check to make sure you have the correct tenant ID and "
                         "are signing into the correct cloud." % tenant_ref)

    # ------------------------------------------------------------ token
    def token(self, req, tenant_ref):
        tenant = self.config.find_tenant(tenant_ref)
        if tenant is None:
            return self._no_tenant(tenant_ref)
        form = req.form()
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        # HTTP Basic client authentication is allowed too (RFC 6749 §2.3.1).
        basic = req.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                import base64
                import urllib.parse
                cid, _, sec = base64.b64decode(basic[6:].strip()).decode().partition(":")
                client_id = client_id or urllib.parse.unquote_plus(cid)
                secret = secret or urllib.parse.unquote_plus(sec)
            except (ValueError, UnicodeDecodeError):
                return aad_error(401, "invalid_client", 7000216,
                                 "The Authorization header is not a valid Basic credential.")
        grant = form.get("grant_type")
        if not grant:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type '%s'." % grant)
        if not client_id:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'client_id'.")
        req.client_id = client_id
        app = tenant.apps.get(client_id.lower())
        if app is None:
            return aad_error(400, "unauthorized_client", 700016,
                             "Application with identifier '%s' was not found in the directory '%s'. This "
                             "can happen if the application has not been installed by the administrator "
                             "of the tenant or consented to by any user in the tenant. You may have sent "
                             "your authentication request to the wrong tenant." % (client_id, tenant_ref))
        scope = form.get("scope")
        if not scope:
            return aad_error(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'scope'.")
        # Client authentication.
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return aad_error(400, "invalid_request", 50027,
                                 "Invalid client_assertion_type; expected '%s'." % ASSERTION_TYPE)
            err = self._check_assertion(req, tenant, tenant_ref, app, assertion)
            if err:
                return err
            acr = "2"
        elif secret is not None:
            if not app.secret or not hmac.compare_digest(secret.encode(), app.secret.encode()):
                return aad_error(401, "invalid_client", 7000215,
                                 "Invalid client secret provided. Ensure the secret being sent in the "
                                 "request is the client secret value, not the client secret ID, for a "
                                 "secret added to app '%s'." % app.client_id)
            acr = "1"
        else:
            return aad_error(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' "
                             "or 'client_secret'.")
        # Scope: one resource, with /.default for the client-credentials flow.
        scopes = scope.split()
        resource_scopes = [s for s in scopes if s.lower() not in ("openid", "profile", "offline_access")]
        if len(resource_scopes) != 1 or not resource_scopes[0].endswith("/.default"):
            return aad_error(400, "invalid_scope", 70011,
                             "The provided request must include a 'scope' input parameter. The provided "
                             "value for the input parameter 'scope' is not valid. The scope %s is not "
                             "valid. Client credential flows must have a scope value with /.default "
                             "suffixed to the resource identifier (application ID URI)." % scope)
        resource = resource_scopes[0][:-len("/.default")]
        if resource.rstrip("/").lower() not in self.resources:
            return aad_error(400, "invalid_resource", 500011,
                             "The resource principal named %s was not found in the tenant named %s. This "
                             "can happen if the application has not been installed by the administrator "
                             "of the tenant or consented to by any user in the tenant. You might have "
                             "sent your authentication request to the wrong tenant." % (resource, tenant_ref))
        lifetime = int(self.config.settings["tokenLifetimeSeconds"])
        token = self.issue(app, resource, lifetime, req.host, acr)
        return Response(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                              "access_token": token},
                        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _check_assertion(self, req, tenant, tenant_ref, app, assertion):
        """Verify a client assertion JWT (reference §5.2); None if valid."""
        try:
            header, claims, signing_input, sig = jose.decode_jwt_unverified(assertion)
        except jose.JoseError:
            return aad_error(400, "invalid_request", 50027,
                             "JWT token is invalid or malformed.")
        # MSAL keeps '=' padding on thumbprints; compare without it.
        thumbs = [str(header.get(h, "")).rstrip("=") for h in ("x5t#S256", "x5t") if header.get(h)]
        if not app.cert_public_key or not any(t in app.thumbprints for t in thumbs):
            return aad_error(401, "invalid_client", 700027,
                             "The certificate with identifier used to sign the client assertion is not "
                             "registered on application. [Reason - The key was not found., Thumbprint of "
                             "key used by client: '%s']" % (thumbs[0] if thumbs else ""))
        try:
            jose.verify_jws_signature(header, signing_input, sig, app.cert_public_key)
        except jose.JoseError:
            return aad_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        # aud must be this token endpoint (tenant by id or by the name in the URL).
        aud = str(claims.get("aud", "")).rstrip("/").lower()
        valid_aud = {"https://%s/%s/oauth2/v2.0/token" % (req.host, t)
                     for t in (tenant.tenant_id, tenant_ref.lower())}
        if aud not in valid_aud:
            return aad_error(401, "invalid_client", 700023,
                             "Client assertion audience claim does not match Realm issuer. Review the "
                             "documentation at https://learn.microsoft.com/entra/identity-platform/"
                             "certificate-credentials .")
        if claims.get("iss") != claims.get("sub") or str(claims.get("sub", "")).lower() != app.client_id:
            return aad_error(401, "invalid_client", 700021,
                             "Client assertion application identifier doesn't match 'client_id' parameter. "
                             "Review the documentation at https://learn.microsoft.com/entra/"
                             "identity-platform/certificate-credentials .")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)) or now > exp or now < nbf:
            return aad_error(401, "invalid_client", 700024,
                             "Client assertion is not within its valid time range. Current time: %s, "
                             "assertion valid from %s, expiry time of assertion %s. Review the "
                             "documentation at https://learn.microsoft.com/entra/identity-platform/"
                             "certificate-credentials ." % (
                                 _utc(now), _utc(nbf) if isinstance(nbf, (int, float)) else "?",
                                 _utc(exp) if isinstance(exp, (int, float)) else "?"))
        return None

    def issue(self, app, resource, lifetime, login_host, acr="1"):
        """Sign an app-only access token like Entra's (v1 format, which Key
        Vault's and ARM's app registrations use)."""
        now = int(time.time())
        cloud = CLOUDS[LOGIN_HOSTS.get(login_host, "AzureCloud")]
        iss = cloud["issuer"].format(tid=app.tenant_id)
        claims = {"aud": resource, "iss": iss, "iat": now, "nbf": now, "exp": now + lifetime,
                  "aio": jose.b64url_encode(os.urandom(24)), "appid": app.client_id, "appidacr": acr,
                  "idp": iss, "idtyp": "app", "oid": app.object_id, "rh": "0.emulator.",
                  "sub": app.object_id, "tid": app.tenant_id,
                  "uti": jose.b64url_encode(os.urandom(16)), "ver": "1.0"}
        return jose.sign_jwt(claims, self.key, {"x5t": self.kid, "kid": self.kid})

    # ------------------------------------------------------------ validation
    def validate_access_token(self, authorization, audiences):
        """Check an 'Authorization: Bearer' header; returns the claims.
        audiences: acceptable `aud` values (compared without trailing '/')."""
        if not authorization:
            raise TokenProblem("missing")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenProblem("missing")
        try:
            header, claims, signing_input, sig = jose.decode_jwt_unverified(token.strip())
            jose.verify_jws_signature(header, signing_input, sig, self.public_key)
        except jose.JoseError as exc:
            raise TokenProblem("signature", str(exc)) from None
        now = time.time()
        # No clock-skew allowance: the emulator and its clients share a clock.
        if not isinstance(claims.get("exp"), (int, float)) or now >= claims["exp"]:
            raise TokenProblem("expired", str(claims.get("exp")))
        if isinstance(claims.get("nbf"), (int, float)) and now < claims["nbf"]:
            raise TokenProblem("expired", "not yet valid")
        aud = str(claims.get("aud", "")).rstrip("/").lower()
        if aud not in {a.rstrip("/").lower() for a in audiences}:
            raise TokenProblem("audience", str(claims.get("aud")))
        return claims
