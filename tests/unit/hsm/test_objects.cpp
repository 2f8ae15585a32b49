// Objects: find, attributes (two-call, per-attribute reasons), set, create, copy, destroy.
#include <dlfcn.h>

#include "tests/unit/hsm/fake_module.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {
namespace {

Tmpl data_object(std::string_view label, std::string_view value) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_DATA).b(CKA_TOKEN, false).b(CKA_PRIVATE, false).str(CKA_LABEL, label)
      .str(CKA_VALUE, value);
  return t;
}

std::string as_string(const Bytes* b) { return b ? std::string(b->begin(), b->end()) : "<none>"; }

}  // namespace

TEST_CASE("objects: create, find, read, set, copy, destroy") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE a = ok(s.create(data_object("alpha", "one")));
  CK_OBJECT_HANDLE b = ok(s.create(data_object("beta", "two")));

  Tmpl by_label;
  by_label.str(CKA_LABEL, "beta");
  auto found = ok(s.find(by_label));
  REQUIRE(found.size() == 1);
  CHECK(found[0] == b);
  Tmpl data_class;
  data_class.ul(CKA_CLASS, CKO_DATA);
  CHECK(ok(s.find(data_class)).size() == 2);

  const CK_ATTRIBUTE_TYPE want[] = {CKA_LABEL, CKA_VALUE, CKA_CLASS};
  Attributes at = ok(s.get_attributes(a, want));
  CHECK(at.unavailable.empty());
  CHECK(as_string(at.find(CKA_LABEL)) == "alpha");
  CHECK(as_string(at.find(CKA_VALUE)) == "one");
  CHECK(at.ulong(CKA_CLASS) == CKO_DATA);

  Tmpl relabel;
  relabel.str(CKA_LABEL, "alpha-2");
  ok(s.set_attributes(a, relabel));
  const CK_ATTRIBUTE_TYPE label_only[] = {CKA_LABEL};
  CHECK(as_string(ok(s.get_attributes(a, label_only)).find(CKA_LABEL)) == "alpha-2");

  Tmpl copy_label;
  copy_label.str(CKA_LABEL, "alpha-copy");
  CK_OBJECT_HANDLE c = ok(s.copy(a, copy_label));
  Attributes ca = ok(s.get_attributes(c, want));
  CHECK(as_string(ca.find(CKA_LABEL)) == "alpha-copy");
  CHECK(as_string(ca.find(CKA_VALUE)) == "one");

  ok(s.destroy(a));
  Error e = err(s.get_attributes(a, label_only));
  CHECK(e.rv == CKR_OBJECT_HANDLE_INVALID);
  CHECK(contains(e.message, "C_GetAttributeValue: CKR_OBJECT_HANDLE_INVALID (object "));
  CHECK(ok(s.find(data_class)).size() == 2);

  e = err(s.create(Tmpl().ul(CKA_CLASS, CKO_DATA).b(CKA_TOKEN, true).str(CKA_LABEL, "x")
                       .ul(0x7fff0001, 1)));
  CHECK(e.rv == CKR_ATTRIBUTE_TYPE_INVALID);
}

TEST_CASE("attributes: sensitive and unknown attributes are reported one by one, not fatal") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE k = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));

  SUBCASE("several unavailable attributes of different kinds") {
    const CK_ATTRIBUTE_TYPE want[] = {CKA_VALUE, CKA_UNIQUE_ID, CKA_VALUE_LEN, CKA_MODULUS,
                                      CKA_LABEL};
    Attributes at = ok(s.get_attributes(k, want));
    CHECK(at.unavailable.size() == 3);
    CHECK(at.unavailable.at(CKA_VALUE) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(at.unavailable.at(CKA_UNIQUE_ID) == CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK(at.unavailable.at(CKA_MODULUS) == CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK(at.ulong(CKA_VALUE_LEN) == 32);
    CHECK(at.find(CKA_LABEL) != nullptr);  // present, empty
    CHECK_FALSE(at.values.has(CKA_VALUE));
  }
  SUBCASE("a single unavailable attribute") {
    const CK_ATTRIBUTE_TYPE want[] = {CKA_VALUE, CKA_KEY_TYPE};
    Attributes at = ok(s.get_attributes(k, want));
    REQUIRE(at.unavailable.size() == 1);
    CHECK(at.unavailable.at(CKA_VALUE) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(at.ulong(CKA_KEY_TYPE) == CKK_AES);
  }
  SUBCASE("a readable key value comes back, and is wiped with the Attributes") {
    Tmpl t = aes_key(16);
    t.b(CKA_SENSITIVE, false);
    CK_OBJECT_HANDLE plain = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), t));
    const CK_ATTRIBUTE_TYPE want[] = {CKA_VALUE};
    Attributes at = ok(s.get_attributes(plain, want));
    REQUIRE(at.find(CKA_VALUE));
    CHECK(at.find(CKA_VALUE)->size() == 16);
    core::AttrMap copy = at.values;
    wipe_key_material(copy);
    CHECK_FALSE(copy.has(CKA_VALUE));
  }
  SUBCASE("template-valued attributes are refused up front") {
    const CK_ATTRIBUTE_TYPE want[] = {CKA_WRAP_TEMPLATE};
    Error e = err(s.get_attributes(k, want));
    CHECK(e.rv == CKR_ARGUMENTS_BAD);
    CHECK(contains(e.message, "holds a template"));
  }
}

TEST_CASE("find: C_FindObjectsFinal ends every search, also a capped one") {
  SoftHsm h;
  Session s = h.user_session();
  for (int i = 0; i < 70; ++i) ok(s.create(data_object("many", std::to_string(i))));
  Tmpl many;
  many.str(CKA_LABEL, "many");
  CHECK(ok(s.find(many, 3)).size() == 3);
  // A search left open would make the next C_FindObjectsInit fail with CKR_OPERATION_ACTIVE.
  CHECK(ok(s.find(many)).size() == 70);
  CHECK(ok(s.find(many, 65)).size() == 65);
  CHECK(ok(s.find(Tmpl().str(CKA_LABEL, "none"))).empty());
}

TEST_CASE("find: a failed C_FindObjects is reported and the search still ended (fake module)") {
  void* dl = dlopen(fake_module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE(dl);
  auto* st = reinterpret_cast<FakeP11StateFn>(dlsym(dl, "fake_p11_state"))();
  {
    auto m = ok(Module::load(fake_module_path()));
    Session s = ok(m->open_session(7));
    st->find_rv = CKR_DEVICE_ERROR;
    int finals = st->find_final_calls;
    Error e = err(s.find(Tmpl()));
    CHECK(e.rv == CKR_DEVICE_ERROR);
    CHECK(contains(e.message, "C_FindObjects: CKR_DEVICE_ERROR"));
    CHECK(st->find_final_calls == finals + 1);
    st->find_rv = CKR_OK;
  }
  dlclose(dl);
}

}  // namespace cdcp11::hsm::test
