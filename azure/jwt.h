// Client assertions for Entra ID certificate credentials (reference §5.2): a JWT signed with
// the application's certificate key, PS256 with an x5t#S256 header.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "azure/error.h"
#include "azure/secret.h"
#include "common/bytes.h"
#include "common/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace cdcp11::azure {

class ClientCertificate {
 public:
  // cert_pem: the certificate; key_pem: its private key (often the same file). The key
  // file must not be readable by group or others.
  static Result<ClientCertificate, Error> load(const std::string& cert_path, const std::string& key_path);
  static Result<ClientCertificate, Error> from_pem(const Secret& cert_and_key_pem);

  const Bytes& cert_der() const { return der_; }
  EVP_PKEY* key() const { return key_.get(); }
  std::string x5t_s256() const;  // base64url(SHA-256(cert DER)), no padding

 private:
  Bytes der_;
  std::shared_ptr<EVP_PKEY> key_;
};

struct AssertionClaims {
  std::string client_id;
  std::string audience;  // exactly the token endpoint URL
  std::chrono::system_clock::time_point now;
  std::chrono::seconds lifetime{600};
};

// header.claims.signature; jti is a fresh UUID each time.
Result<Secret, Error> make_client_assertion(const ClientCertificate& cert, const AssertionClaims& c);

}  // namespace cdcp11::azure
