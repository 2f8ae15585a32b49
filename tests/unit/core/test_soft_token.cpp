// SoftToken through the Backend interface, on a real store in a temporary directory.
#include <doctest/doctest.h>

#include "core/cloud/jwk.h"
#include "core/mechanisms.h"
#include "core/mirror/byok.h"
#include "soft_token_test_util.h"

using namespace cdcp11;
using namespace cdcp11::core;
using namespace cdcp11::softtoken::test;
using cdcp11::softtoken::SoftToken;

TEST_CASE("an uninitialised token reports so; init_token and init_pin set the flags") {
  TempDir d;
  auto t = open(group(d.path));
  CHECK_FALSE(t->status().initialized);
  init(*t);
  auto s = t->status();
  CHECK(s.initialized);
  CHECK(s.user_pin_initialized);
  CHECK(s.serial.size() == 16);
  CHECK_FALSE(s.user_pin_locked);
}

TEST_CASE("wrong PINs count across instances and lock the PIN; a right PIN resets the count") {
  TempDir d;
  auto g = group(d.path, 3);
  auto t = open(g);
  init(*t);
  auto other = open(g);  // as a second process would
  CHECK(err_of(t->login(CKU_USER, pin("wrong-1"))) == Errc::pin_incorrect);
  CHECK(t->status().user_pin_count_low);
  CHECK(t->login(CKU_USER, pin("user-1")));  // resets
  t->logout();
  CHECK_FALSE(t->status().user_pin_count_low);
  CHECK(err_of(t->login(CKU_USER, pin("wrong-1"))) == Errc::pin_incorrect);
  CHECK(err_of(other->login(CKU_USER, pin("wrong-2"))) == Errc::pin_incorrect);
  CHECK(t->status().user_pin_final_try);
  CHECK(err_of(other->login(CKU_USER, pin("wrong-3"))) == Errc::pin_incorrect);
  CHECK(t->status().user_pin_locked);
  CHECK(err_of(t->login(CKU_USER, pin("user-1"))) == Errc::pin_locked);
  // The SO PIN is independent, and the SO can reset the user PIN.
  REQUIRE(t->login(CKU_SO, pin("so-pin-1")));
  REQUIRE(t->init_pin(pin("user-2")));
  t->logout();
  CHECK(t->login(CKU_USER, pin("user-2")));
}

TEST_CASE("PIN length and change rules") {
  TempDir d;
  auto t = open(group(d.path));
  CHECK(err_of(t->init_token(pin("123"), "t")) == Errc::pin_len_range);
  init(*t);
  CHECK(err_of(t->set_pin(CKU_USER, pin("nope-nope"), pin("user-new"))) == Errc::pin_incorrect);
  REQUIRE(t->set_pin(CKU_USER, pin("user-1"), pin("user-new")));
  CHECK(err_of(t->login(CKU_USER, pin("user-1"))) == Errc::pin_incorrect);
  CHECK(t->login(CKU_USER, pin("user-new")));
  // Re-initialising needs the current SO PIN.
  t->logout();
  CHECK(err_of(t->init_token(pin("not-the-so"), "t")) == Errc::pin_incorrect);
}

TEST_CASE("secrets need a login, are sealed at rest and seen by another instance") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  CHECK(err_of(t->create_object(aes_key(true))) == Errc::user_not_logged_in);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(aes_key(true));
  REQUIRE(obj);
  CHECK_FALSE(obj->attrs.has(CKA_VALUE));
  CHECK(obj->attrs.ulong(CKA_VALUE_LEN) == 32u);
  CHECK(obj->attrs.string_or(CKA_UNIQUE_ID, "") == obj->uid);

  // The key value is not on disk in clear.
  auto st = store::ObjectStore::open(g.token.dir, false);
  REQUIRE(st);
  auto raw = (*st)->get(obj->uid);
  REQUIRE(raw);
  const Bytes needle(32, 0x5a);
  CHECK(std::search(raw->begin(), raw->end(), needle.begin(), needle.end()) == raw->end());

  // A private object is sealed whole: another instance sees it only once logged in.
  auto other = open(g);
  auto ch = other->refresh();
  REQUIRE(ch);
  CHECK(ch->upserted.empty());
  CHECK(err_of(other->secret_attribute(obj->uid, CKA_VALUE)) == Errc::user_not_logged_in);
  REQUIRE(other->login(CKU_USER, pin("user-1")));
  auto after_login = other->refresh();
  REQUIRE(after_login);
  REQUIRE(after_login->upserted.size() == 1);
  CHECK(after_login->upserted[0].uid == obj->uid);
  CHECK(after_login->upserted[0].attrs.ulong(CKA_VALUE_LEN) == 32u);
  auto v = other->secret_attribute(obj->uid, CKA_VALUE);
  REQUIRE(v);
  CHECK(Bytes(v->begin(), v->end()) == needle);

  // A second refresh with nothing changed reports nothing.
  auto again = other->refresh();
  REQUIRE(again);
  CHECK(again->upserted.empty());
  CHECK(again->removed.empty());
}

TEST_CASE("a public object's key material needs no login, in this instance or another") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  t->logout();
  AttrMap pub = aes_key(true);
  pub.set_bool(CKA_PRIVATE, false);
  auto obj = t->create_object(pub);  // PKCS#11: an R/W public session may make public objects
  REQUIRE(obj);
  auto v = t->secret_attribute(obj->uid, CKA_VALUE);
  REQUIRE(v);
  CHECK(Bytes(v->begin(), v->end()) == Bytes(32, 0x5a));
  auto other = open(g);
  REQUIRE(other->refresh());
  v = other->secret_attribute(obj->uid, CKA_VALUE);
  REQUIRE(v);
  CHECK(Bytes(v->begin(), v->end()) == Bytes(32, 0x5a));
  // still bound to its object: a copy of the record under another id does not open
  auto st = store::ObjectStore::open(g.token.dir, false);
  REQUIRE(st);
  auto raw = (*st)->get(obj->uid);
  REQUIRE(raw);
  const std::string other_uid = store::ObjectStore::new_uid();
  REQUIRE((*st)->put(other_uid, *raw));
  REQUIRE(t->refresh());
  CHECK(t->secret_attribute(other_uid, CKA_VALUE).error().code == Errc::device_error);
  // a private one still needs the login
  CHECK(t->create_object(aes_key(true)).error().code == Errc::user_not_logged_in);
}

TEST_CASE("a sealed record copied under another object id does not open") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(aes_key(true));
  REQUIRE(obj);
  auto st = store::ObjectStore::open(g.token.dir, false);
  REQUIRE(st);
  auto raw = (*st)->get(obj->uid);
  REQUIRE(raw);
  const std::string other_uid = store::ObjectStore::new_uid();
  REQUIRE((*st)->put(other_uid, *raw));  // a valid store record, but sealed for obj->uid
  auto ch = t->refresh();
  REQUIRE(ch);
  for (auto& o : ch->upserted) CHECK(o.uid != other_uid);  // refused: its MAC names obj->uid
  auto r = t->secret_attribute(other_uid, CKA_VALUE);
  REQUIRE_FALSE(r);
  CHECK(err_of(r) == Errc::object_handle_invalid);
  CHECK(t->secret_attribute(obj->uid, CKA_VALUE));
}

TEST_CASE("re-initialisation wipes objects and another instance drops them") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  REQUIRE(t->create_object(data_object("public", false, "v")));
  auto other = open(g);
  REQUIRE(other->refresh()->upserted.size() == 1);
  REQUIRE(other->login(CKU_USER, pin("user-1")));
  REQUIRE(other->refresh());
  t->logout();
  REQUIRE(t->init_token(pin("so-pin-1"), "t"));
  CHECK_FALSE(t->status().user_pin_initialized);
  auto ch = other->refresh();
  REQUIRE(ch);
  CHECK(ch->full_reload);
  CHECK(ch->upserted.empty());
  // ... and whoever was logged in there is no longer: the old token key opens nothing new.
  CHECK(err_of(other->create_object(data_object("after", true, "v"))) == Errc::user_not_logged_in);
}

TEST_CASE("session objects stay in memory; generated key pairs work for sign and verify") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  Mechanism gen{find_mechanism(CKM_EC_KEY_PAIR_GEN), {}};
  AttrMap pub, priv;
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  pub.set_ulong(CKA_KEY_TYPE, CKK_EC);
  pub.set(CKA_EC_PARAMS, Bytes{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22});  // P-384
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  priv.set_ulong(CKA_KEY_TYPE, CKK_EC);
  priv.set_bool(CKA_TOKEN, false);
  auto pair = t->generate_key_pair(gen, pub, priv);
  REQUIRE(pair);
  CHECK(pair->first.attrs.find(CKA_EC_POINT)->size() == 2 + 97);
  CHECK(pair->second.attrs.has(CKA_EC_PARAMS));
  CHECK(t->refresh()->upserted.empty());  // nothing reached the store

  Mechanism sign{find_mechanism(CKM_ECDSA_SHA384), {}};
  auto s = t->begin(OpKind::sign, sign, pair->second);
  REQUIRE(s);
  const Bytes msg{'h', 'i'};
  REQUIRE((*s)->update(msg));
  auto sig = (*s)->finish();
  REQUIRE(sig);
  CHECK(sig->size() == 96);
  auto v = t->begin(OpKind::verify, sign, pair->first);
  REQUIRE(v);
  REQUIRE((*v)->update(msg));
  CHECK((*v)->verify(*sig));
  auto v2 = t->begin(OpKind::verify, sign, pair->first);
  REQUIRE((*v2)->update(Bytes{'h', 'o'}));
  CHECK(err_of((*v2)->verify(*sig)) == Errc::signature_invalid);
}

TEST_CASE("mirror exports: public and private JWK components, and BYOK wrapping that opens by hand") {
  TempDir d;
  auto t = open(group(d.path));
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto& c = crypto::default_backend();

  Mechanism gen{find_mechanism(CKM_EC_KEY_PAIR_GEN), {}};
  AttrMap pub, priv;
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  pub.set_ulong(CKA_KEY_TYPE, CKK_EC);
  pub.set(CKA_EC_PARAMS, Bytes{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23});  // P-521
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  priv.set_ulong(CKA_KEY_TYPE, CKK_EC);
  priv.set_bool(CKA_TOKEN, true);
  priv.set_bool(CKA_EXTRACTABLE, false);  // mirroring does not depend on CKA_EXTRACTABLE
  auto pair = t->generate_key_pair(gen, pub, priv);
  REQUIRE(pair);

  auto from_pub = cloud::public_jwk_of(*t, pair->first);
  auto from_priv = cloud::public_jwk_of(*t, pair->second);
  REQUIRE(from_pub);
  REQUIRE(from_priv);
  CHECK(from_priv->crv == "P-521");
  CHECK(from_priv->x.size() == 66);
  CHECK(from_priv->x == from_pub->x);
  CHECK(from_priv->y == from_pub->y);
  auto pub_attrs = t->public_key(pair->second);
  REQUIRE(pub_attrs);
  CHECK(pub_attrs->ulong(CKA_KEY_TYPE) == CKK_EC);
  CHECK(*pub_attrs->find(CKA_EC_POINT) == *pair->first.attrs.find(CKA_EC_POINT));
  CHECK_FALSE(pub_attrs->has(CKA_VALUE));
  auto material = t->export_plain(pair->second);
  REQUIRE(material);
  auto full = cloud::jwk_private(pair->second.attrs, *material);
  REQUIRE(full);
  CHECK(full->d.size() == 66);
  CHECK(full->x == from_pub->x);

  auto kek = c.generate_rsa(2048, {});
  REQUIRE(kek);
  auto blob = mirror::wrap_for_byok(*t, "g", pair->second, kek->n, kek->e);
  REQUIRE(blob);
  REQUIRE(blob->size() > 256);
  auto kek_priv = c.load_private(crypto::PrivateMaterial{*kek});
  REQUIRE(kek_priv);
  crypto::CipherParams oaep;
  oaep.scheme = crypto::CipherParams::Scheme::rsa_oaep;
  oaep.oaep_hash = crypto::Hash::sha1;
  oaep.mgf1 = crypto::Hash::sha1;
  auto dec = c.decryptor(*kek_priv, oaep);
  REQUIRE(dec);
  REQUIRE((*dec)->update(ByteView(*blob).first(256)));
  auto aes = (*dec)->finish();
  REQUIRE(aes);
  CHECK(aes->size() == 32);
  auto pkcs8 = c.aes_key_unwrap(*aes, ByteView(*blob).subspan(256), true, {});
  REQUIRE(pkcs8);
  auto decoded = c.decode_pkcs8(*pkcs8);
  REQUIRE(decoded);
  auto& ec = std::get<crypto::EcPrivate>(*decoded);
  CHECK(ec.curve == crypto::Curve::p521);
  SecureBytes scalar = ec.d;
  if (scalar.size() < 66) scalar.insert(scalar.begin(), 66 - scalar.size(), 0);
  CHECK(scalar == full->d);

  // A secret key goes as its raw value; Ed25519 has no JWK form Key Vault takes.
  auto aes_obj = t->create_object(aes_key(true));
  REQUIRE(aes_obj);
  auto oct_material = t->export_plain(*aes_obj);
  REQUIRE(oct_material);
  auto oct = cloud::jwk_private(aes_obj->attrs, *oct_material);
  REQUIRE(oct);
  CHECK(oct->kty == "oct");
  CHECK(oct->k == SecureBytes(32, 0x5a));
  Mechanism ed{find_mechanism(CKM_EC_EDWARDS_KEY_PAIR_GEN), {}};
  AttrMap ep, es;
  ep.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  ep.set_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
  ep.set(CKA_EC_PARAMS, Bytes{0x06, 0x03, 0x2b, 0x65, 0x70});
  es.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  es.set_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
  auto edpair = t->generate_key_pair(ed, ep, es);
  REQUIRE(edpair);
  CHECK(err_of(cloud::public_jwk_of(*t, edpair->second)) == Errc::key_type_inconsistent);
  CHECK(mirror::wrap_for_byok(*t, "g", pair->second, Bytes{1, 2, 3}, Bytes{1, 0, 1}).error().code ==
        Errc::wrapping_key_type_inconsistent);
}
