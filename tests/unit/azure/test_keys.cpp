// azure/ against the emulator: tokens (secret and certificate), ARM discovery, every key
// operation, US Government endpoints, connection reuse.
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <thread>

#include "azure/base64url.h"
#include "azure/byok_blob.h"
#include "azure/connection.h"
#include "support.h"

using namespace cdcp11;
using namespace cdcp11::azure;
using namespace cdcp11::azure::test;

namespace {

Bytes sha256(std::string_view s) {
  Bytes md(32);
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md.data(), &n, EVP_sha256(), nullptr);
  return md;
}

Bytes bn_param(EVP_PKEY* k, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(k, name, &bn);
  Bytes out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}
SecureBytes bn_secret(EVP_PKEY* k, const char* name) {
  Bytes b = bn_param(k, name);
  SecureBytes s(b.begin(), b.end());
  secure_zero(b.data(), b.size());
  return s;
}

}  // namespace

TEST_CASE("tokens: client secret and client certificate") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto t = conn->tokens().token("https://vault.azure.net/.default");
  REQUIRE_MESSAGE(t, t.error().describe());
  CHECK((*t)->oid == kSecretAppOid);
  CHECK((*t)->tid == kTenant);
  CHECK((*t)->appid == kSecretApp);
  // Cached: a second call does not fetch.
  auto t2 = conn->tokens().token("https://vault.azure.net/.default");
  CHECK(t2->get() == t->get());
  CHECK(conn->tokens().fetch_count() == 1);
  // Another scope is another token.
  REQUIRE(conn->tokens().token("https://management.azure.com/.default"));
  CHECK(conn->tokens().fetch_count() == 2);

  ConnectionConfig c = emu.config();
  c.client_id = kCertApp;
  c.client_secret = Secret();
  c.client_certificate_file = emu.cert_app_pem();
  auto cc = emu.connect(c);
  auto ct = cc->tokens().token("https://vault.azure.net/.default");
  REQUIRE_MESSAGE(ct, ct.error().describe());
  CHECK((*ct)->oid == kCertAppOid);
  CHECK(cc->check());
}

TEST_CASE("ARM: vaults and managed HSMs with tier, soft delete, purge protection, RBAC and our permissions") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto arm = conn->arm();
  auto all = arm.list_all();
  REQUIRE_MESSAGE(all, all.error().describe());
  std::map<std::string, VaultInfo> by;
  for (auto& v : *all) by[v.name] = v;
  REQUIRE(by.count("demo-standard"));
  REQUIRE(by.count("demo-mhsm"));
  CHECK(by["demo-standard"].tier == VaultTier::standard);
  CHECK(by["demo-standard"].uri == "https://demo-standard.vault.azure.net");
  CHECK(by["demo-standard"].resource_group == "rg-demo");
  CHECK(by["demo-premium"].tier == VaultTier::premium);
  CHECK(by["demo-premium"].soft_delete);
  CHECK(by["demo-premium"].retention_days == 7);
  CHECK_FALSE(by["demo-premium"].purge_protection);
  CHECK(by["demo-protected"].purge_protection);
  CHECK_FALSE(by["demo-nosoftdelete"].soft_delete);
  CHECK(by["demo-nosoftdelete"].resource_group == "rg-legacy");
  CHECK(by["demo-rbac"].rbac);
  CHECK(by["demo-rbac"].our_key_permissions.empty());
  CHECK(by["demo-mhsm"].tier == VaultTier::managed_hsm);
  CHECK(by["demo-mhsm"].uri == "https://demo-mhsm.managedhsm.azure.net");
  CHECK(by["demo-mhsm"].retention_days == 7);
  // Our (secret app) permissions: "all" on standard, expanded.
  CHECK(by["demo-standard"].has_access_policy);
  CHECK(by["demo-standard"].can("purge"));
  CHECK(by["demo-standard"].can("wrapKey"));

  // The reader app sees only get/list; the cert app has an explicit list on premium.
  ConnectionConfig rc = emu.config();
  rc.client_id = kReaderApp;
  rc.client_secret = Secret(std::string_view(kReaderSecret));
  auto reader = emu.connect(rc)->arm().list_vaults();
  REQUIRE(reader);
  for (auto& v : *reader)
    if (v.name == "demo-premium") CHECK(v.our_key_permissions == std::vector<std::string>{"get", "list"});
    else if (v.name == "demo-protected") CHECK_FALSE(v.has_access_policy);

  // All pages: with a page size of 2 the listing spans several pages.
  auto small = Emulator::start({{"\"armPageSize\": 25", "\"armPageSize\": 2"}});
  auto paged = small->connect(small->config())->arm().list_vaults();
  REQUIRE(paged);
  CHECK(paged->size() == all->size() - 1);
  int pages = 0;
  for (auto& l : small->log_lines())
    if (log_request(l).find("GET management.azure.com/subscriptions/") == 0) ++pages;
  CHECK(pages >= 3);

  auto found = arm.find_vault("demo-protected");
  REQUIRE(found);
  CHECK(found->tier == VaultTier::premium);
  auto missing = arm.find_vault("demo-nonexistent");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().kind == ErrorKind::vault_not_found);
}

TEST_CASE("keys: create, get, list (paged), versions, update, sign/verify, encrypt/decrypt, wrap/unwrap") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config("demo-premium"));
  auto kv = conn->vault();
  const std::string name = unique_name("k");
  CreateKeyOptions o;
  o.kty = "RSA-HSM";
  o.key_size = 2048;
  o.key_ops = {"sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"};
  o.tags = {{"origin", "pkcs11"}};
  auto k = kv.create_key(name, o);
  REQUIRE_MESSAGE(k, k.error().describe());
  CHECK(k->name() == name);
  CHECK(k->version().size() == 32);
  CHECK(k->key.kty == "RSA-HSM");
  CHECK(k->key.rsa_bits() == 2048);
  CHECK(k->tags["origin"] == "pkcs11");
  CHECK(k->attributes.recovery_level == "CustomizedRecoverable+Purgeable");
  CHECK(k->attributes.recoverable_days == 7);

  auto g = kv.get_key(name);
  REQUIRE(g);
  CHECK(g->key.n == k->key.n);
  CHECK(kv.get_key(name, k->version())->key.kid == k->key.kid);

  // Second version, then versions list.
  auto k2 = kv.create_key(name, o);
  REQUIRE(k2);
  auto versions = kv.list_key_versions(name);
  REQUIRE(versions);
  CHECK(versions->size() == 2);

  // Paging: many keys, one item per page.
  for (int i = 0; i < 3; ++i) REQUIRE(kv.create_key(name + "-p" + std::to_string(i), {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  std::size_t mark = emu.log_mark();
  auto listed = kv.list_keys(1);
  REQUIRE(listed);
  int found = 0;
  for (auto& it : *listed)
    if (it.name().rfind(name, 0) == 0) ++found;
  CHECK(found == 4);
  CHECK(emu.log_since(mark).size() >= listed->size());

  UpdateKeyOptions u;
  u.tags = Tags{{"state", "updated"}};
  u.attributes.exp = 4102444800;
  auto up = kv.update_key(name, k2->version(), u);
  REQUIRE(up);
  CHECK(up->tags["state"] == "updated");
  CHECK(up->attributes.exp == 4102444800);

  Bytes digest = sha256("hello");
  for (const std::string& version : {k2->version(), std::string()}) {
    auto sig = kv.sign(name, version, "PS256", digest);
    REQUIRE_MESSAGE(sig, sig.error().describe());
    CHECK(sig->value.size() == 256);
    auto ok = kv.verify(name, version, "PS256", digest, sig->value);
    REQUIRE(ok);
    CHECK(*ok);
    Bytes bad = sig->value;
    bad[0] ^= 1;
    CHECK_FALSE(*kv.verify(name, version, "PS256", digest, bad));
  }
  auto ct = kv.encrypt(name, k2->version(), {"RSA-OAEP-256", {}, {}, {}}, to_bytes(view("secret data")));
  REQUIRE(ct);
  auto pt = kv.decrypt(name, k2->version(), {"RSA-OAEP-256", {}, {}, {}}, ct->value);
  REQUIRE(pt);
  CHECK(std::string(pt->begin(), pt->end()) == "secret data");
  Bytes aes(32, 0x42);
  auto w = kv.wrap_key(name, k2->version(), "RSA-OAEP", aes);
  REQUIRE(w);
  auto uw = kv.unwrap_key(name, k2->version(), "RSA-OAEP", w->value);
  REQUIRE(uw);
  CHECK(Bytes(uw->begin(), uw->end()) == aes);

  // EC signature: raw r||s.
  auto ec = kv.sign(name + "-p0", "", "ES256", digest);
  REQUIRE(ec);
  CHECK(ec->value.size() == 64);
  CHECK(*kv.verify(name + "-p0", "", "ES256", digest, ec->value));
}

TEST_CASE("keys: delete, get/list deleted, recover, purge, backup, restore") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config("demo-premium"));
  auto kv = conn->vault();
  const std::string name = unique_name("d");
  REQUIRE(kv.create_key(name, {"RSA", 2048, {}, "", {"sign", "verify"}, {}, {}}));
  auto backup = kv.backup_key(name);
  REQUIRE(backup);
  CHECK(backup->size() > 100);

  auto del = kv.delete_key(name);
  REQUIRE_MESSAGE(del, del.error().describe());
  CHECK(del->recovery_id == "https://demo-premium.vault.azure.net/deletedkeys/" + name);
  CHECK(del->scheduled_purge_date.has_value());
  // Deletion completes asynchronously (softDeleteDelaySeconds = 1).
  Result<DeletedKeyBundle, Error> gd = fail(make_error(ErrorKind::not_found, "", ""));
  for (int i = 0; i < 50 && !gd; ++i) {
    gd = kv.get_deleted_key(name);
    if (!gd) {
      CHECK(gd.error().kind == ErrorKind::not_found);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  REQUIRE(gd);
  auto dl = kv.list_deleted_keys();
  REQUIRE(dl);
  bool listed = false;
  for (auto& it : *dl) listed |= it.name() == name;
  CHECK(listed);
  auto conflict = kv.create_key(name, {"RSA", 2048, {}, "", {}, {}, {}});
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().kind == ErrorKind::conflict);
  CHECK(conflict.error().inner_code == "ObjectIsDeletedButRecoverable");

  auto rec = kv.recover_deleted_key(name);
  REQUIRE_MESSAGE(rec, rec.error().describe());
  CHECK(rec->name() == name);
  Result<KeyBundle, Error> back = fail(make_error(ErrorKind::not_found, "", ""));
  for (int i = 0; i < 50 && !back; ++i) {
    back = kv.get_key(name);
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(back);

  // Delete, wait, purge; then restore from the backup.
  REQUIRE(kv.delete_key(name));
  for (int i = 0; i < 50 && !kv.get_deleted_key(name); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto purge = kv.purge_deleted_key(name);
  REQUIRE_MESSAGE(purge, purge.error().describe());
  CHECK(kv.get_deleted_key(name).error().kind == ErrorKind::not_found);
  auto restored = kv.restore_key(*backup, {name});
  REQUIRE_MESSAGE(restored, restored.error().describe());
  CHECK(restored->name() == name);

  // Purge protection: 403 with its own sentence.
  auto pk = conn->vault("https://demo-protected.vault.azure.net");
  const std::string pn = unique_name("pp");
  REQUIRE(pk.create_key(pn, {"RSA", 2048, {}, "", {}, {}, {}}));
  REQUIRE(pk.delete_key(pn));
  for (int i = 0; i < 50 && !pk.get_deleted_key(pn); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto pp = pk.purge_deleted_key(pn);
  REQUIRE_FALSE(pp);
  CHECK(pp.error().kind == ErrorKind::purge_protected);
  CHECK(pp.error().describe() == "Purge is not possible on demo-protected.vault.azure.net because purge protection is "
                                 "enabled: the key is purged automatically after the retention period; recover it or "
                                 "use another name.");

  // No soft delete: Purgeable, no recoveryId.
  auto ns = conn->vault("https://demo-nosoftdelete.vault.azure.net");
  const std::string nn = unique_name("ns");
  auto nk = ns.create_key(nn, {"EC", {}, {}, "P-384", {}, {}, {}});
  REQUIRE(nk);
  CHECK(nk->attributes.recovery_level == "Purgeable");
  auto nd = ns.delete_key(nn);
  REQUIRE(nd);
  CHECK(nd->recovery_id.empty());
}

TEST_CASE("keys: JWK import (RSA and EC) and BYOK import into a premium vault") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config("demo-premium"));
  auto kv = conn->vault();

  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  ImportKeyOptions o;
  PrivateJwk j;
  j.kty = "RSA";
  j.n = bn_param(rsa, OSSL_PKEY_PARAM_RSA_N);
  j.e = bn_param(rsa, OSSL_PKEY_PARAM_RSA_E);
  j.d = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_D);
  j.p = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_FACTOR1);
  j.q = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_FACTOR2);
  j.dp = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT1);
  j.dq = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT2);
  j.qi = bn_secret(rsa, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
  o.jwk = j;
  o.key_ops = {"sign", "verify"};
  o.tags = {{"origin", "pkcs11"}};
  const std::string rn = unique_name("imp-rsa");
  auto r = kv.import_key(rn, o);
  REQUIRE_MESSAGE(r, r.error().describe());
  CHECK(r->key.n == j.n);
  CHECK(r->key.kty == "RSA");
  // A signature made in the vault verifies locally with the original key.
  Bytes digest = sha256("imported");
  auto sig = kv.sign(rn, r->version(), "RS256", digest);
  REQUIRE(sig);
  EVP_PKEY_CTX* vctx = EVP_PKEY_CTX_new(rsa, nullptr);
  EVP_PKEY_verify_init(vctx);
  EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha256());
  CHECK(EVP_PKEY_verify(vctx, sig->value.data(), sig->value.size(), digest.data(), digest.size()) == 1);
  EVP_PKEY_CTX_free(vctx);

  EVP_PKEY* ec = EVP_EC_gen("P-256");
  PrivateJwk e;
  e.kty = "EC";
  e.crv = "P-256";
  e.x = bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X);
  e.y = bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y);
  e.d = bn_secret(ec, OSSL_PKEY_PARAM_PRIV_KEY);
  ImportKeyOptions eo;
  eo.jwk = e;
  eo.key_ops = {"sign", "verify"};
  auto er = kv.import_key(unique_name("imp-ec"), eo);
  REQUIRE_MESSAGE(er, er.error().describe());
  CHECK(er->key.crv == "P-256");

  // BYOK: KEK in the vault, wrap here (as the token would), build the blob, import.
  const std::string kek = unique_name("kek");
  auto kk = kv.create_key(kek, {"RSA-HSM", 2048, {}, "", {"import"}, {}, {}});
  REQUIRE_MESSAGE(kk, kk.error().describe());
  // CKM_RSA_AES_KEY_WRAP: OAEP-SHA1(KEK, aes) || KWP(aes, PKCS#8(target)).
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  BIGNUM* n = BN_bin2bn(kk->key.n.data(), static_cast<int>(kk->key.n.size()), nullptr);
  BIGNUM* ee = BN_bin2bn(kk->key.e.data(), static_cast<int>(kk->key.e.size()), nullptr);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, ee);
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* fctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* kekpub = nullptr;
  EVP_PKEY_fromdata_init(fctx);
  EVP_PKEY_fromdata(fctx, &kekpub, EVP_PKEY_PUBLIC_KEY, params);
  REQUIRE(kekpub);
  unsigned char aes[32];
  RAND_bytes(aes, 32);
  EVP_PKEY_CTX* ectx = EVP_PKEY_CTX_new(kekpub, nullptr);
  EVP_PKEY_encrypt_init(ectx);
  EVP_PKEY_CTX_set_rsa_padding(ectx, RSA_PKCS1_OAEP_PADDING);
  EVP_PKEY_CTX_set_rsa_oaep_md(ectx, EVP_sha1());
  EVP_PKEY_CTX_set_rsa_mgf1_md(ectx, EVP_sha1());
  std::size_t wl = 0;
  EVP_PKEY_encrypt(ectx, nullptr, &wl, aes, 32);
  Bytes ciphertext(wl);
  EVP_PKEY_encrypt(ectx, ciphertext.data(), &wl, aes, 32);
  ciphertext.resize(wl);
  EVP_PKEY* target = EVP_EC_gen("P-256");
  unsigned char* der = nullptr;
  PKCS8_PRIV_KEY_INFO* p8 = EVP_PKEY2PKCS8(target);
  int derlen = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
  EVP_CIPHER_CTX* cctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX_set_flags(cctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  EVP_EncryptInit_ex(cctx, EVP_aes_256_wrap_pad(), nullptr, aes, nullptr);
  Bytes kwp(static_cast<std::size_t>(derlen) + 16);
  int l1 = 0, l2 = 0;
  EVP_EncryptUpdate(cctx, kwp.data(), &l1, der, derlen);
  EVP_EncryptFinal_ex(cctx, kwp.data() + l1, &l2);
  kwp.resize(static_cast<std::size_t>(l1 + l2));
  ciphertext.insert(ciphertext.end(), kwp.begin(), kwp.end());
  auto blob = build_byok_blob(kk->key.kid, ciphertext);
  REQUIRE_MESSAGE(blob, blob.error().describe());
  ImportKeyOptions bo;
  bo.byok_blob = *blob;
  bo.byok_kty = "EC-HSM";
  bo.byok_crv = "P-256";
  bo.key_ops = {"sign", "verify"};
  bo.expected_public.crv = "P-256";
  bo.expected_public.x = bn_param(target, OSSL_PKEY_PARAM_EC_PUB_X);
  bo.expected_public.y = bn_param(target, OSSL_PKEY_PARAM_EC_PUB_Y);
  auto br = kv.import_key(unique_name("byok"), bo);
  REQUIRE_MESSAGE(br, br.error().describe());
  CHECK(br->key.kty == "EC-HSM");
  CHECK(public_material_matches(br->key, bo.expected_public));

  OPENSSL_free(der);
  PKCS8_PRIV_KEY_INFO_free(p8);
  EVP_CIPHER_CTX_free(cctx);
  EVP_PKEY_CTX_free(ectx);
  EVP_PKEY_CTX_free(fctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(ee);
  EVP_PKEY_free(kekpub);
  EVP_PKEY_free(target);
  EVP_PKEY_free(ec);
  EVP_PKEY_free(rsa);
}

TEST_CASE("managed HSM: challenge for managedhsm.azure.net, oct-HSM keys") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config();
  c.vault_url = "https://demo-mhsm.managedhsm.azure.net";
  auto conn = emu.connect(c);
  auto kv = conn->vault();
  CHECK(kv.is_managed_hsm());
  const std::string name = unique_name("aes");
  auto k = kv.create_key(name, {"oct-HSM", 256, {}, "", {"encrypt", "decrypt", "wrapKey", "unwrapKey"}, {}, {}});
  REQUIRE_MESSAGE(k, k.error().describe());
  CHECK(k->key.kty == "oct-HSM");
  auto w = kv.wrap_key(name, "", "A256KW", Bytes(32, 7));
  REQUIRE_MESSAGE(w, w.error().describe());
  auto uw = kv.unwrap_key(name, "", "A256KW", w->value);
  REQUIRE(uw);
  CHECK(Bytes(uw->begin(), uw->end()) == Bytes(32, 7));
  // The token was requested for the managed HSM resource.
  auto t = conn->tokens().token("https://managedhsm.azure.net/.default");
  REQUIRE(t);
  CHECK(conn->tokens().fetch_count() == 1);
}

TEST_CASE("rotation: rotate a key, and get / set its rotation policy") {
  Emulator& emu = shared_emulator();
  auto kv = emu.connect(emu.config("demo-premium"))->vault();
  const std::string name = unique_name("rot");
  auto k = kv.create_key(name, {"RSA-HSM", 3072, {}, "", {"sign", "verify"}, {}, {{"origin", "pkcs11"}}});
  REQUIRE_MESSAGE(k, k.error().describe());

  // A key that never had a policy answers the service's default: notify 30 days before expiry.
  auto def = kv.get_rotation_policy(name);
  REQUIRE_MESSAGE(def, def.error().describe());
  CHECK(def->id == "https://demo-premium.vault.azure.net/keys/" + name + "/rotationpolicy");
  REQUIRE(def->lifetime_actions.size() == 1);
  CHECK(def->lifetime_actions[0].action == RotationAction::notify);
  CHECK(def->lifetime_actions[0].time_before_expiry == "P30D");
  CHECK_FALSE(def->created);

  RotationPolicy p;
  p.expiry_time = "P1Y";
  p.lifetime_actions = {{RotationAction::rotate, "P90D", ""}, {RotationAction::notify, "", "P30D"}};
  auto set = kv.set_rotation_policy(name, p);
  REQUIRE_MESSAGE(set, set.error().describe());
  CHECK(set->expiry_time == "P1Y");
  CHECK(set->created.has_value());
  auto got = kv.get_rotation_policy(name);
  REQUIRE(got);
  REQUIRE(got->lifetime_actions.size() == 2);
  CHECK(got->lifetime_actions[0].action == RotationAction::rotate);
  CHECK(got->lifetime_actions[0].time_after_create == "P90D");
  CHECK(got->lifetime_actions[0].time_before_expiry.empty());
  CHECK(got->lifetime_actions[1].action == RotationAction::notify);
  CHECK(got->lifetime_actions[1].time_before_expiry == "P30D");
  CHECK(got->expiry_time == "P1Y");

  // Rotate: a new version of the same shape, expiring per the policy.
  std::size_t mark = emu.log_mark();
  auto r = kv.rotate_key(name);
  REQUIRE_MESSAGE(r, r.error().describe());
  CHECK(r->version() != k->version());
  CHECK(r->key.kty == "RSA-HSM");
  CHECK(r->key.rsa_bits() == 3072);
  CHECK(r->key.n != k->key.n);
  CHECK(r->tags["origin"] == "pkcs11");
  REQUIRE(r->attributes.exp);
  REQUIRE(r->attributes.created);
  CHECK(*r->attributes.exp - *r->attributes.created == 365 * 86400);
  CHECK(kv.get_key(name)->version() == r->version());
  bool posted = false;
  for (auto& l : emu.log_since(mark)) posted |= log_request(l) == "POST demo-premium.vault.azure.net/keys/" + name + "/rotate 200";
  CHECK(posted);

  // The service's rules come back as its 400; bad local input is refused before any request.
  RotationPolicy short_one;
  short_one.lifetime_actions = {{RotationAction::rotate, "P6D", ""}};
  auto bad = kv.set_rotation_policy(name, short_one);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().kind == ErrorKind::bad_request);
  CHECK(bad.error().message.find("at least 7 days") != std::string::npos);
  mark = emu.log_mark();
  RotationPolicy malformed;
  malformed.lifetime_actions = {{RotationAction::rotate, "90 days", ""}};
  auto m = kv.set_rotation_policy(name, malformed);
  REQUIRE_FALSE(m);
  CHECK(m.error().kind == ErrorKind::config);
  CHECK(m.error().message.find("'90 days' is not an ISO 8601 duration") != std::string::npos);
  RotationPolicy both;
  both.lifetime_actions = {{RotationAction::rotate, "P30D", "P30D"}};
  auto b = kv.set_rotation_policy(name, both);
  REQUIRE_FALSE(b);
  CHECK(b.error().kind == ErrorKind::config);
  CHECK(emu.log_since(mark).empty());

  // Permission names: the certificate app has no rotate / getrotationpolicy on demo-premium.
  ConnectionConfig cert = emu.config("demo-premium");
  cert.client_id = kCertApp;
  cert.client_secret = Secret();
  cert.client_certificate_file = emu.cert_app_pem();
  auto ck = emu.connect(cert)->vault();
  auto denied = ck.rotate_key(name);
  REQUIRE_FALSE(denied);
  CHECK(denied.error().kind == ErrorKind::forbidden);
  CHECK(denied.error().permission == "rotate");
  auto denied_get = ck.get_rotation_policy(name);
  REQUIRE_FALSE(denied_get);
  CHECK(denied_get.error().permission == "getrotationpolicy");
}

TEST_CASE("paging: a nextLink on the vault's own host is followed on the name the vault was reached under") {
  Emulator& emu = shared_emulator();
  auto direct = emu.connect(emu.config("demo-premium"))->vault();
  const std::string name = unique_name("nl");
  for (int i = 0; i < 3; ++i)
    REQUIRE(direct.create_key(name + "-" + std::to_string(i), {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  // demo-premium answers under a custom domain too (like an application gateway in front of a
  // private endpoint); Azure still builds nextLink on https://demo-premium.vault.azure.net:443.
  ConnectionConfig c = emu.config();
  c.vault_url = "https://demo-premium.kv.cdcp11.test";
  c.verify_challenge_resource = false;  // the challenge names vault.azure.net, not the custom domain
  auto kv = emu.connect(c)->vault();
  std::size_t mark = emu.log_mark();
  auto listed = kv.list_keys(2);
  REQUIRE_MESSAGE(listed, listed.error().describe());
  int found = 0;
  for (auto& it : *listed)
    if (it.name().rfind(name, 0) == 0) ++found;
  CHECK(found == 3);
  int pages = 0;
  for (auto& l : emu.log_since(mark)) {
    std::string r = log_request(l);
    CHECK(r.find("vault.azure.net") == std::string::npos);  // every page on the name we were given
    if (r.find("GET demo-premium.kv.cdcp11.test/keys 200") == 0) ++pages;
  }
  CHECK(pages >= 2);
}

TEST_CASE("nextLink: a link to another host is refused when the vault is reached under its own name") {
  Emulator& emu = shared_emulator();
  auto kv = emu.connect(emu.config("demo-standard"))->vault();
  REQUIRE(kv.create_key(unique_name("nx"), {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  REQUIRE(kv.create_key(unique_name("nx"), {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  // A page whose nextLink names another vault: never followed with our token.
  REQUIRE(emu.add_fault(R"({"match":{"host":"demo-standard.*","path":"/keys"},"action":"status","status":200,)"
                        R"("body":{"value":[],"nextLink":"https://demo-premium.vault.azure.net:443/keys?api-version=7.4"},)"
                        R"("count":1})") == 201);
  auto r = kv.list_keys(1);
  emu.clear_faults();
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::invalid_response);
}

TEST_CASE("secp256k1: a P-256K key in the vault signs ES256K, and the signature verifies locally") {
  Emulator& emu = shared_emulator();
  auto kv = emu.connect(emu.config("demo-premium"))->vault();
  const std::string name = unique_name("k1");
  auto k = kv.create_key(name, {"EC-HSM", {}, {}, "P-256K", {"sign", "verify"}, {}, {}});
  REQUIRE_MESSAGE(k, k.error().describe());
  CHECK(k->key.crv == "P-256K");
  REQUIRE(k->key.x.size() == 32);
  Bytes digest = sha256("secp256k1 in Key Vault");
  auto sig = kv.sign(name, k->version(), "ES256K", digest);
  REQUIRE_MESSAGE(sig, sig.error().describe());
  REQUIRE(sig->value.size() == 64);  // raw r||s
  // Verify with OpenSSL: the public point from x/y, the signature as DER.
  Bytes point{0x04};
  point.insert(point.end(), k->key.x.begin(), k->key.x.end());
  point.insert(point.end(), k->key.y.begin(), k->key.y.end());
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "secp256k1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* fctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* pub = nullptr;
  REQUIRE(EVP_PKEY_fromdata_init(fctx) == 1);
  REQUIRE(EVP_PKEY_fromdata(fctx, &pub, EVP_PKEY_PUBLIC_KEY, params) == 1);
  ECDSA_SIG* es = ECDSA_SIG_new();
  ECDSA_SIG_set0(es, BN_bin2bn(sig->value.data(), 32, nullptr), BN_bin2bn(sig->value.data() + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(es, &der);
  EVP_PKEY_CTX* vctx = EVP_PKEY_CTX_new(pub, nullptr);
  REQUIRE(EVP_PKEY_verify_init(vctx) == 1);
  CHECK(EVP_PKEY_verify(vctx, der, static_cast<std::size_t>(der_len), digest.data(), digest.size()) == 1);
  EVP_PKEY_CTX_free(vctx);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  EVP_PKEY_free(pub);
  EVP_PKEY_CTX_free(fctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  // The vault verifies it too.
  auto ok = kv.verify(name, k->version(), "ES256K", digest, sig->value);
  REQUIRE(ok);
  CHECK(*ok);
}

TEST_CASE("US Government cloud: login.microsoftonline.us and *.vault.usgovcloudapi.net") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config();
  c.cloud = "usgov";
  c.vault_url = "https://demo-usgov.vault.usgovcloudapi.net";
  auto conn = emu.connect(c);
  std::size_t mark = emu.log_mark();
  auto kv = conn->vault();
  auto k = kv.create_key(unique_name("gov"), {"RSA-HSM", 2048, {}, "", {"sign"}, {}, {}});
  REQUIRE_MESSAGE(k, k.error().describe());
  CHECK(k->key.kid.rfind("https://demo-usgov.vault.usgovcloudapi.net/keys/", 0) == 0);
  auto vaults = conn->arm().list_vaults();
  REQUIRE_MESSAGE(vaults, vaults.error().describe());
  bool token_us = false, arm_us = false, global = false;
  for (auto& l : emu.log_since(mark)) {
    std::string r = log_request(l);
    token_us |= r.find("POST login.microsoftonline.us/" + std::string(kTenant) + "/oauth2/v2.0/token 200") == 0;
    arm_us |= r.find("GET management.usgovcloudapi.net/subscriptions/") == 0;
    global |= r.find("login.microsoftonline.com") != std::string::npos || r.find("management.azure.com") != std::string::npos;
  }
  CHECK(token_us);
  CHECK(arm_us);
  CHECK_FALSE(global);
  CHECK(conn->tokens().token("https://vault.usgovcloudapi.net/.default"));
}

TEST_CASE("HTTP: keep-alive connections are reused across calls and threads") {
  Emulator& emu = shared_emulator();
  HttpClient http(emu.http());
  auto get = [&] {
    HttpRequest r;
    r.url = "https://127.0.0.1:" + std::to_string(emu.port()) + "/_admin/health";
    r.headers = {{"X-AKV-Emulator-Admin", "1"}};
    return http.perform(r, "health");
  };
  auto a = get();
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->new_connections == 1);
  CHECK(a->request_id.size() == 36);
  CHECK(a->client_request_id.size() == 36);
  auto b = get();
  REQUIRE(b);
  CHECK(b->new_connections == 0);

  std::atomic<long> connects{0}, ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto r = get();
        if (r && r->status == 200) ++ok;
        if (r) connects += r->new_connections;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(ok == 40);
  CHECK(connects <= 4);
}
