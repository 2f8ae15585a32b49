#include "azure/jwt.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "azure/base64url.h"
#include "azure/json.h"
#include "azure/pem.h"
#include "azure/util.h"

namespace cdcp11::azure {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

Error cert_error(std::string msg) { return make_error(ErrorKind::certificate, "load client certificate", std::move(msg)); }

}  // namespace

Result<ClientCertificate, Error> ClientCertificate::from_pem(const Secret& pem) {
  ClientCertificate out;
  {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.bytes().data(), static_cast<int>(pem.size())));
    std::unique_ptr<X509, X509Free> x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!x) return fail(cert_error("No PEM certificate found in the client certificate file"));
    int len = i2d_X509(x.get(), nullptr);
    if (len <= 0) return fail(cert_error("The client certificate cannot be encoded"));
    out.der_.resize(static_cast<std::size_t>(len));
    unsigned char* p = out.der_.data();
    i2d_X509(x.get(), &p);
  }
  PemKey k = read_pem_private_key(pem.bytes());
  if (k.encrypted)
    return fail(cert_error(std::string("The client certificate's private key is encrypted; ") + kEncryptedKeyAdvice));
  if (!k.key) return fail(cert_error("No PEM private key found for the client certificate"));
  out.key_ = std::move(k.key);
  if (EVP_PKEY_get_base_id(out.key_.get()) != EVP_PKEY_RSA)
    return fail(cert_error("The client certificate key is not an RSA key; Entra ID assertions need RSA (PS256)"));
  return out;
}

Result<ClientCertificate, Error> ClientCertificate::load(const std::string& cert_path, const std::string& key_path) {
  if (key_path.empty() || key_path == cert_path) {
    CDC_ASSIGN(Secret both, load_private_file(cert_path, "client certificate"));
    return from_pem(both);
  }
  CDC_ASSIGN(Secret key, load_private_file(key_path, "client certificate key"));
  // The certificate alone is public; it only has to be readable.
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(cert_path.c_str(), "r"));
  if (!bio) return fail(cert_error("The client certificate file " + cert_path + " cannot be opened"));
  std::unique_ptr<X509, X509Free> x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!x) return fail(cert_error("No PEM certificate found in " + cert_path));
  std::unique_ptr<BIO, BioFree> mem(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(mem.get(), x.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(mem.get(), &data);
  SecureBytes combined(data, data + n);
  combined.insert(combined.end(), key.bytes().begin(), key.bytes().end());
  return from_pem(Secret(std::move(combined)));
}

std::string ClientCertificate::x5t_s256() const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(der_.data(), der_.size(), md, &len, EVP_sha256(), nullptr);
  return b64url_encode(ByteView(md, len));
}

Result<Secret, Error> make_client_assertion(const ClientCertificate& cert, const AssertionClaims& c) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const long long now = duration_cast<seconds>(c.now.time_since_epoch()).count();

  JsonBuffer hb;
  {
    JsonWriter w(hb);
    w.StartObject();
    w.Key("alg"); w.String("PS256");
    w.Key("typ"); w.String("JWT");
    w.Key("x5t#S256"); write_string(w, cert.x5t_s256());
    w.EndObject();
  }
  JsonBuffer cb;
  {
    JsonWriter w(cb);
    w.StartObject();
    w.Key("aud"); write_string(w, c.audience);
    w.Key("iss"); write_string(w, c.client_id);
    w.Key("sub"); write_string(w, c.client_id);
    w.Key("jti"); write_string(w, new_uuid());
    w.Key("nbf"); w.Int64(now);
    w.Key("iat"); w.Int64(now);
    w.Key("exp"); w.Int64(now + c.lifetime.count());
    w.EndObject();
  }
  std::string input = b64url_encode(view(std::string_view(hb.GetString(), hb.GetSize()))) + "." +
                      b64url_encode(view(std::string_view(cb.GetString(), cb.GetSize())));

  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, cert.key()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)
    return fail(make_error(ErrorKind::certificate, "sign client assertion", "The client assertion cannot be signed"));
  std::size_t sig_len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    return fail(make_error(ErrorKind::certificate, "sign client assertion", "The client assertion cannot be signed"));
  Bytes sig(sig_len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    return fail(make_error(ErrorKind::certificate, "sign client assertion", "The client assertion cannot be signed"));
  sig.resize(sig_len);
  SecureBytes out(input.begin(), input.end());
  out.push_back('.');
  append(out, b64url_encode(sig));
  return Secret(std::move(out));
}

}  // namespace cdcp11::azure
