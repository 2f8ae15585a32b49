"""akvemu: a local emulator of Azure Key Vault / Managed HSM (data plane),
Entra ID (v2 token endpoint) and ARM (vault discovery), for tests and demos.

Module map (one concern each):
  jose      base64url, JWT signing/verification, certificate thumbprints
  tlsca     the emulator's own CA and server certificate
  config    loading and validating the JSON configuration
  store     persistent per-vault key state (atomic writes, mode 0600)
  keycrypto key generation, JWK import/export, crypto operations, BYOK unwrap
  entra     token endpoint, OIDC/instance discovery, access-token checks
  authz     access policies and RBAC roles
  keyvault  Key Vault / Managed HSM REST data plane
  arm       ARM listing of vaults and managed HSMs
  faults    injected faults and the per-vault rate limiter
  server    HTTPS server, Host-header routing, admin endpoint, logging
"""
