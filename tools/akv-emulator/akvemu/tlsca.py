"""The emulator's own certificate authority and HTTPS server certificate.

On first start a CA is created in the state directory; clients trust it
(curl CAINFO, azure-core connection_verify / REQUESTS_CA_BUNDLE). The server
certificate carries the real Azure host names as SANs so that a client which
only redirects DNS (libcurl CURLOPT_RESOLVE / CURLOPT_CONNECT_TO) sees exactly
the names it would see in Azure, and verifies them normally.
"""
import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

from .fsutil import atomic_write

SERVER_DNS_NAMES = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.windows.net",
    "management.azure.com",
    "management.usgovcloudapi.net",
    "*.vault.azure.net",
    "*.vault.usgovcloudapi.net",
    "*.managedhsm.azure.net",
    "*.managedhsm.usgovcloudapi.net",
    "localhost",
]
SERVER_IPS = ["127.0.0.1"]


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(state_dir):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "akv-emulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "akv-emulator local CA")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    atomic_write(os.path.join(state_dir, "ca.key"), _key_pem(key))
    atomic_write(os.path.join(state_dir, "ca.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def _make_server(state_dir, ca_key, ca_cert, names):
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "akv-emulator")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    atomic_write(os.path.join(state_dir, "server.key"), _key_pem(key))
    atomic_write(os.path.join(state_dir, "server.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _server_cert_current(path, ca_cert, names):
    """True if the stored server cert is signed by this CA, has today's SAN
    list and at least 30 days left."""
    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return False
    if cert.issuer != ca_cert.subject:
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if sorted(sans.get_values_for_type(x509.DNSName)) != sorted(names):
        return False
    return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc) > _now() + datetime.timedelta(days=30)


def ensure_ca(state_dir, extra_names=()):
    """Create (once) the CA and (when needed) the server certificate, for the Azure names plus
    `extra_names` (the vaults' configured aliases). Returns the path of the CA certificate (PEM)."""
    names = SERVER_DNS_NAMES + sorted(set(extra_names) - set(SERVER_DNS_NAMES))
    ca_pem = os.path.join(state_dir, "ca.pem")
    ca_key_path = os.path.join(state_dir, "ca.key")
    if os.path.exists(ca_pem) and os.path.exists(ca_key_path):
        with open(ca_key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(ca_pem, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
    else:
        ca_key, ca_cert = _make_ca(state_dir)
    if not _server_cert_current(os.path.join(state_dir, "server.pem"), ca_cert, names):
        _make_server(state_dir, ca_key, ca_cert, names)
    return ca_pem


def server_context(state_dir):
    """TLS 1.2+ server context with the emulator's server certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Serve the chain (leaf + CA) like a real server would send its intermediates.
    ctx.load_cert_chain(os.path.join(state_dir, "server.pem"), os.path.join(state_dir, "server.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
