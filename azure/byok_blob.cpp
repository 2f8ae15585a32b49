#include "azure/byok_blob.h"

#include "azure/base64url.h"
#include "azure/json.h"
#include "azure/keyvault.h"

namespace cdcp11::azure {

Result<Bytes, Error> build_byok_blob(std::string_view kek_kid, ByteView ciphertext, std::string_view generator) {
  const std::string op = "build BYOK blob";
  auto id = parse_key_id(kek_kid);
  if (!id || id->version.empty())
    return fail(make_error(ErrorKind::config, op,
                           "The KEK id '" + std::string(kek_kid) +
                               "' is not a versioned key id (https://VAULT/keys/NAME/VERSION)"));
  bool plausible = false;
  for (std::size_t k : {256u, 384u, 512u})
    if (ciphertext.size() >= k + 16 && (ciphertext.size() - k) % 8 == 0) plausible = true;
  if (!plausible)
    return fail(make_error(ErrorKind::config, op,
                           "The BYOK ciphertext (" + std::to_string(ciphertext.size()) +
                               " bytes) is not an RSA-2048/3072/4096 OAEP block followed by an AES-KWP block"));
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  w.Key("schema_version"); w.String("1.0.0");
  w.Key("header");
  w.StartObject();
  w.Key("kid"); write_string(w, kek_kid);
  w.Key("alg"); w.String("dir");
  w.Key("enc"); w.String("CKM_RSA_AES_KEY_WRAP");
  w.EndObject();
  w.Key("ciphertext"); write_string(w, b64url_encode(ciphertext));
  w.Key("generator"); write_string(w, generator);
  w.EndObject();
  return Bytes(reinterpret_cast<const uint8_t*>(b.GetString()),
               reinterpret_cast<const uint8_t*>(b.GetString()) + b.GetSize());
}

}  // namespace cdcp11::azure
