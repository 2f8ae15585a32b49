"""Configuration: tenants, applications, subscriptions, vaults, managed HSMs.

The file format is documented in ../README.md; demo-config.json is an example.
Everything is validated up front so that a typo fails at start, not in a test.
"""
import datetime
import json
import os
import re
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .fsutil import atomic_write
from .jose import cert_thumbprints

# Host names and resources per cloud (reference §6). The US Gov challenge
# authority is [U]: we use the US Gov login host, the most likely choice.
CLOUDS = {
    "AzureCloud": {
        "login": "login.microsoftonline.com",
        "arm": "management.azure.com",
        "vault_suffix": "vault.azure.net",
        "mhsm_suffix": "managedhsm.azure.net",
        "vault_resource": "https://vault.azure.net",
        "mhsm_resource": "https://managedhsm.azure.net",
        "arm_resources": ["https://management.azure.com", "https://management.core.windows.net"],
        "vault_challenge_authority": "https://login.windows.net",
        "mhsm_challenge_authority": "https://login.microsoftonline.com",
        "issuer": "https://sts.windows.net/{tid}/",
    },
    "AzureUSGovernment": {
        "login": "login.microsoftonline.us",
        "arm": "management.usgovcloudapi.net",
        "vault_suffix": "vault.usgovcloudapi.net",
        "mhsm_suffix": "managedhsm.usgovcloudapi.net",
        "vault_resource": "https://vault.usgovcloudapi.net",
        "mhsm_resource": "https://managedhsm.usgovcloudapi.net",
        "arm_resources": ["https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net"],
        "vault_challenge_authority": "https://login.microsoftonline.us",
        "mhsm_challenge_authority": "https://login.microsoftonline.us",
        "issuer": "https://login.microsoftonline.us/{tid}/",
    },
}
LOGIN_HOSTS = {c["login"]: name for name, c in CLOUDS.items()}
LOGIN_HOSTS["login.windows.net"] = "AzureCloud"  # alias of login.microsoftonline.com
ARM_HOSTS = {c["arm"]: name for name, c in CLOUDS.items()}

VAULT_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")  # 3-24 chars


class ConfigError(Exception):
    pass


class App:
    def __init__(self, tenant_id, d, state_dir):
        self.tenant_id = tenant_id
        self.name = d.get("name", "")
        self.client_id = _uuid(d, "clientId").lower()
        # The service principal's object id (token `oid`); access policies and
        # role assignments name principals by it.
        self.object_id = str(d.get("objectId") or uuid.uuid5(uuid.NAMESPACE_URL, "oid:" + self.client_id)).lower()
        self.secret = d.get("clientSecret")
        self.cert_path = None
        self.thumbprints = set()   # x5t and x5t#S256 values (unpadded)
        self.cert_public_key = None
        if d.get("certificate"):
            self.cert_path = d["certificate"]
            if not os.path.isabs(self.cert_path):
                self.cert_path = os.path.join(state_dir, self.cert_path)
            if not os.path.exists(self.cert_path):
                _generate_app_certificate(self.cert_path, self.name or self.client_id)
            with open(self.cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            der = cert.public_bytes(serialization.Encoding.DER)
            self.thumbprints = set(cert_thumbprints(der))
            self.cert_public_key = cert.public_key()
        if not self.secret and not self.cert_path:
            raise ConfigError("application %s needs clientSecret or certificate" % self.client_id)


class Tenant:
    def __init__(self, d, state_dir):
        self.tenant_id = _uuid(d, "tenantId").lower()
        self.domains = [x.lower() for x in d.get("domains", [])]
        self.apps = {}
        for a in d.get("applications", []):
            app = App(self.tenant_id, a, state_dir)
            self.apps[app.client_id] = app


class Vault:
    """A key vault (kind 'vault') or a managed HSM (kind 'mhsm')."""

    def __init__(self, kind, d, sub, settings):
        self.kind = kind
        self.name = d["name"]
        if not VAULT_NAME_RE.match(self.name):
            raise ConfigError("invalid vault/HSM name %r (3-24 chars, letters, digits, -)" % self.name)
        self.cloud = d.get("cloud", "AzureCloud")
        if self.cloud not in CLOUDS:
            raise ConfigError("unknown cloud %r" % self.cloud)
        self.subscription_id = sub["subscriptionId"].lower()
        self.tenant_id = sub["tenantId"].lower()
        self.resource_group = d.get("resourceGroup", "rg-emulator")
        self.location = d.get("location", "westeurope")
        self.tags = d.get("tags", {})
        if kind == "vault":
            self.sku = d.get("sku", "standard").lower()
            if self.sku not in ("standard", "premium"):
                raise ConfigError("vault %s: sku must be standard or premium" % self.name)
            self.soft_delete = bool(d.get("enableSoftDelete", True))
            self.rbac = bool(d.get("enableRbacAuthorization", False))
        else:
            self.sku = "Standard_B1"
            self.soft_delete = True  # always on for managed HSM (reference §8)
            self.rbac = True        # managed HSM: local RBAC only
        self.retention_days = int(d.get("softDeleteRetentionInDays", 90))
        if not 7 <= self.retention_days <= 90:
            raise ConfigError("%s: softDeleteRetentionInDays must be 7..90" % self.name)
        self.purge_protection = bool(d.get("enablePurgeProtection", False))
        if self.purge_protection and not self.soft_delete:
            raise ConfigError("%s: purge protection needs soft delete" % self.name)
        self.access_policies = d.get("accessPolicies", [])
        self.role_assignments = d.get("roleAssignments", [])
        self.initial_admins = [x.lower() for x in d.get("initialAdminObjectIds", [])]
        self.delete_delay = float(d.get("softDeleteDelaySeconds", settings["softDeleteDelaySeconds"]))
        c = CLOUDS[self.cloud]
        self.host = "%s.%s" % (self.name.lower(), c["mhsm_suffix" if kind == "mhsm" else "vault_suffix"])
        self.resource = c["mhsm_resource" if kind == "mhsm" else "vault_resource"]
        self.base_url = "https://" + self.host
        # Other names the vault answers under, like a custom domain in front of a private endpoint
        # (azure-sdk-for-python#29940). Ids and nextLinks still name self.host, as Azure's do.
        self.aliases = [str(a).lower() for a in d.get("aliases", [])]

    @property
    def is_hsm_capable(self):
        return self.kind == "mhsm" or self.sku == "premium"

    def recovery_level(self):
        """attributes.recoveryLevel for keys in this vault (reference §3.3, §4)."""
        if not self.soft_delete:
            return "Purgeable"
        prefix = "Recoverable" if self.retention_days >= 90 else "CustomizedRecoverable"
        # Purge protection removes "+Purgeable". ("+ProtectedSubscription" is
        # about the subscription's own cancellation protection, not modelled.)
        return prefix if self.purge_protection else prefix + "+Purgeable"

    def recoverable_days(self):
        return self.retention_days if self.soft_delete else 0

    def arm_id(self):
        t = "managedHSMs" if self.kind == "mhsm" else "vaults"
        return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/%s/%s" % (
            self.subscription_id, self.resource_group, t, self.name)


DEFAULT_SETTINGS = {
    "softDeleteDelaySeconds": 2.0,   # how long DELETE / recover take to complete
    "tokenLifetimeSeconds": 3599,
    "armPageSize": 25,
    "rateLimit": {"enabled": False, "scale": 1.0, "retryAfter": None},
    "faults": [],
}


class Config:
    def __init__(self, path, state_dir):
        with open(path, "r", encoding="utf-8") as f:
            try:
                d = json.load(f)
            except ValueError as exc:
                raise ConfigError("%s: %s" % (path, exc)) from exc
        self.path = path
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(d.get("emulator", {}))
        self.tenants = {}
        for t in d.get("tenants", []):
            ten = Tenant(t, state_dir)
            self.tenants[ten.tenant_id] = ten
        self.subscriptions = {}
        self.vaults_by_host = {}
        self.vaults = []
        for s in d.get("subscriptions", []):
            sub = dict(s)
            sub["subscriptionId"] = _uuid(s, "subscriptionId").lower()
            sub["tenantId"] = _uuid(s, "tenantId").lower()
            if sub["tenantId"] not in self.tenants:
                raise ConfigError("subscription %s: unknown tenant" % sub["subscriptionId"])
            sub["vaults"] = [Vault("vault", v, sub, self.settings) for v in s.get("vaults", [])]
            sub["managedHsms"] = [Vault("mhsm", v, sub, self.settings) for v in s.get("managedHsms", [])]
            self.subscriptions[sub["subscriptionId"]] = sub
            for v in sub["vaults"] + sub["managedHsms"]:
                for h in [v.host] + v.aliases:
                    if h in self.vaults_by_host or h in LOGIN_HOSTS or h in ARM_HOSTS:
                        raise ConfigError("duplicate vault/HSM name or alias %s" % h)
                    self.vaults_by_host[h] = v
                self.vaults.append(v)

    def alias_hosts(self):
        return [a for v in self.vaults for a in v.aliases]

    def find_app(self, tenant_id, client_id):
        t = self.tenants.get(tenant_id)
        return t.apps.get((client_id or "").lower()) if t else None

    def find_tenant(self, tenant):
        """Tenant by id or verified domain name, as Entra accepts both."""
        tenant = (tenant or "").lower()
        if tenant in self.tenants:
            return self.tenants[tenant]
        for t in self.tenants.values():
            if tenant in t.domains:
                return t
        return None

    def app_by_oid(self, oid):
        for t in self.tenants.values():
            for a in t.apps.values():
                if a.object_id == oid:
                    return a
        return None


def _uuid(d, key):
    v = d.get(key)
    try:
        return str(uuid.UUID(str(v)))
    except ValueError:
        raise ConfigError("%s must be a GUID, got %r" % (key, v)) from None


def _generate_app_certificate(path, cn):
    """Self-signed RSA-2048 certificate + key as one PEM (key first), the form
    azure-identity's CertificateCredential and MSAL take directly."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=730))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem += cert.public_bytes(serialization.Encoding.PEM)
    atomic_write(path, pem, 0o600)
