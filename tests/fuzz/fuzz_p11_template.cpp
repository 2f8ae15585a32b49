// Templates through the C ABI of the built module. Once: C_Initialize with a scratch config and
// token, C_InitToken, C_InitPIN, a user login, and fixed keys (a sensitive AES key, an EC pair).
// Per input: a template for C_CreateObject (nested templates included), C_FindObjects with it,
// C_SetAttributeValue and C_CopyObject with it, and a second template for C_GetAttributeValue
// with buffers of exactly the stated size (so ASan sees any write past them). Properties: no
// returned length exceeds its buffer, and sensitive key values never come out.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cdcp11/cdcp11.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

extern "C" CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR);

namespace {

CK_FUNCTION_LIST* p11 = nullptr;
CK_SLOT_ID slot = 0;
CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
CK_OBJECT_HANDLE aes_key = CK_INVALID_HANDLE, ec_priv = CK_INVALID_HANDLE, ec_pub = CK_INVALID_HANDLE;
unsigned runs_since_reset = 0;

constexpr CK_ATTRIBUTE_TYPE kTypes[] = {
    CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_APPLICATION, CKA_VALUE, CKA_OBJECT_ID, CKA_CERTIFICATE_TYPE,
    CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY, CKA_CHECK_VALUE, CKA_KEY_TYPE,
    CKA_SUBJECT, CKA_ID, CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN,
    CKA_SIGN_RECOVER, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_DERIVE, CKA_START_DATE, CKA_END_DATE, CKA_MODULUS,
    CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
    CKA_EXPONENT_2, CKA_COEFFICIENT, CKA_PRIME, CKA_SUBPRIME, CKA_BASE, CKA_VALUE_BITS, CKA_VALUE_LEN,
    CKA_EXTRACTABLE, CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_KEY_GEN_MECHANISM,
    CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE, CKA_EC_PARAMS, CKA_EC_POINT, CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED, CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE, CKA_ALLOWED_MECHANISMS,
    CKA_UNIQUE_ID, CKA_PUBLIC_KEY_INFO, CKA_HW_FEATURE_TYPE, CKA_MECHANISM_TYPE, CKA_CDC_MIRROR,
    CKA_CDC_AZURE_KEY_NAME, CKA_CDC_MIRROR_STATE, CKA_CDC_AZURE_KEY_ID, CKA_CDC_MIRROR_ERROR, CKA_CDC_ORIGIN,
    CKA_CDC_CLOUD_NATIVE};

CK_ATTRIBUTE_TYPE pick_type(fuzz::Reader& in) {
  const std::uint8_t b = in.u8();
  if (b < std::size(kTypes)) return kTypes[b];
  if (b < 0xF0) return kTypes[b % std::size(kTypes)];
  return in.u32();
}

// A caller's template: every value in its own allocation of exactly ulValueLen bytes.
struct Template {
  std::vector<CK_ATTRIBUTE> attrs;
  std::vector<std::unique_ptr<std::uint8_t[]>> values;
  std::vector<std::unique_ptr<Template>> nested;
  std::vector<std::size_t> sizes;  // allocated size of each value (for C_GetAttributeValue)

  CK_ATTRIBUTE* data() { return attrs.empty() ? nullptr : attrs.data(); }
  CK_ULONG count() const { return attrs.size(); }

  void* own(ByteView v) {
    values.push_back(std::make_unique<std::uint8_t[]>(v.size()));
    if (!v.empty()) std::memcpy(values.back().get(), v.data(), v.size());
    return values.back().get();
  }
  template <class T>
  void add_value(CK_ATTRIBUTE_TYPE t, const T& v) {
    attrs.push_back({t, own(ByteView(reinterpret_cast<const std::uint8_t*>(&v), sizeof v)), sizeof v});
  }
};

// Value encodings: a length byte below 0xF0 is followed by that many bytes; 0xF0 is a NULL value
// with a length byte; 0xF1 a nested template; 0xF2 a CK_ULONG; 0xF3/0xF4 CK_TRUE/CK_FALSE; 0xF5
// a 16-bit little-endian length and that many bytes (moduli, certificates).
std::unique_ptr<Template> decode_template(fuzz::Reader& in, int depth) {
  auto t = std::make_unique<Template>();
  for (int n = in.u8() % 17; n > 0 && !in.empty(); --n) {
    const CK_ATTRIBUTE_TYPE type = pick_type(in);
    const std::uint8_t len = in.u8();
    if (len < 0xF0) {
      const ByteView v = in.bytes(len);
      t->attrs.push_back({type, t->own(v), v.size()});
    } else if (len == 0xF0) {
      t->attrs.push_back({type, nullptr, in.u8()});
    } else if (len == 0xF1 && depth < 2) {
      t->nested.push_back(decode_template(in, depth + 1));
      Template& inner = *t->nested.back();
      t->attrs.push_back({type, inner.data(), inner.count() * sizeof(CK_ATTRIBUTE)});
    } else if (len == 0xF5) {
      std::size_t n = in.u8();
      n |= std::size_t{in.u8()} << 8;
      const ByteView v = in.bytes(n);
      t->attrs.push_back({type, t->own(v), v.size()});
    } else if (len == 0xF2) {
      t->add_value(type, static_cast<CK_ULONG>(in.u8()));
    } else {
      t->add_value(type, static_cast<CK_BBOOL>(len == 0xF3 ? CK_TRUE : CK_FALSE));
    }
  }
  return t;
}

// A C_GetAttributeValue template: a type and a buffer size (0xFF: NULL, a length query).
std::unique_ptr<Template> decode_query(fuzz::Reader& in) {
  auto t = std::make_unique<Template>();
  for (int n = in.u8() % 9; n > 0 && !in.empty(); --n) {
    const CK_ATTRIBUTE_TYPE type = pick_type(in);
    const std::uint8_t size = in.u8();
    if (size == 0xFF) {
      t->attrs.push_back({type, nullptr, 0});
      t->sizes.push_back(0);
    } else {
      t->values.push_back(std::make_unique<std::uint8_t[]>(size));
      t->attrs.push_back({type, t->values.back().get(), size});
      t->sizes.push_back(size);
    }
  }
  return t;
}

void check(CK_RV rv, const char* what) {
  if (rv != CKR_OK) fuzz::violated(std::string(what) + " failed: rv " + std::to_string(rv));
}

void get_attributes(CK_OBJECT_HANDLE o, Template& q) {
  for (std::size_t i = 0; i < q.attrs.size(); ++i) q.attrs[i].ulValueLen = q.sizes[i];
  const CK_RV rv = p11->C_GetAttributeValue(session, o, q.data(), q.count());
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
      rv != CKR_BUFFER_TOO_SMALL)
    return;
  for (std::size_t i = 0; i < q.attrs.size(); ++i) {
    const CK_ATTRIBUTE& a = q.attrs[i];
    if (a.pValue && a.ulValueLen != CK_UNAVAILABLE_INFORMATION && a.ulValueLen > q.sizes[i])
      fuzz::violated("C_GetAttributeValue says it wrote " + std::to_string(a.ulValueLen) + " bytes into a buffer of " +
                     std::to_string(q.sizes[i]));
  }
}

// A key created sensitive (or never extractable) must never give out its value.
void expect_secret(CK_OBJECT_HANDLE o, const char* what) {
  for (CK_ATTRIBUTE_TYPE t : {CKA_VALUE, CKA_PRIVATE_EXPONENT}) {
    std::uint8_t buf[512];
    CK_ATTRIBUTE a{t, buf, sizeof buf};
    const CK_RV rv = p11->C_GetAttributeValue(session, o, &a, 1);
    if ((rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) && a.ulValueLen != CK_UNAVAILABLE_INFORMATION)
      fuzz::violated(std::string("the value of ") + what + " came out through C_GetAttributeValue");
  }
}

void reset_token() {
  if (session != CK_INVALID_HANDLE) p11->C_CloseAllSessions(slot);
  CK_UTF8CHAR label[32];
  std::memset(label, ' ', sizeof label);
  std::memcpy(label, "fuzz", 4);
  CK_UTF8CHAR so_pin[] = "12345678", user_pin[] = "1234";
  check(p11->C_InitToken(slot, so_pin, 8, label), "C_InitToken");
  check(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session), "C_OpenSession");
  check(p11->C_Login(session, CKU_SO, so_pin, 8), "C_Login(SO)");
  check(p11->C_InitPIN(session, user_pin, 4), "C_InitPIN");
  check(p11->C_Logout(session), "C_Logout");
  check(p11->C_Login(session, CKU_USER, user_pin, 4), "C_Login(user)");

  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ULONG len = 32;
  CK_MECHANISM aes_gen{CKM_AES_KEY_GEN, nullptr, 0};
  CK_ATTRIBUTE aes[] = {{CKA_TOKEN, &yes, 1}, {CKA_SENSITIVE, &yes, 1}, {CKA_EXTRACTABLE, &no, 1},
                        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_LABEL, const_cast<char*>("aes"), 3}};
  check(p11->C_GenerateKey(session, &aes_gen, aes, std::size(aes), &aes_key), "C_GenerateKey");
  CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  CK_MECHANISM ec_gen{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, p256, sizeof p256}};
  CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1}, {CKA_SENSITIVE, &yes, 1}, {CKA_SIGN, &yes, 1}};
  check(p11->C_GenerateKeyPair(session, &ec_gen, pub, std::size(pub), priv, std::size(priv), &ec_pub, &ec_priv),
        "C_GenerateKeyPair");
  runs_since_reset = 0;
}

void setup() {
  fuzz::quiet_logs();
  const std::string dir = fuzz::scratch_dir("p11");
  const std::string conf = dir + "/cdcp11.json";
  const std::string json =
      R"({"version":1,"groups":[{"name":"fuzz","token":{"dir":"token","kdf_scrypt_log2_n":10,"max_pin_retries":0}}]})";
  fuzz::write_file(conf, view(json));
  check(C_GetFunctionList(&p11), "C_GetFunctionList");
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  args.pReserved = const_cast<char*>(conf.c_str());
  check(p11->C_Initialize(&args), "C_Initialize");
  CK_ULONG n = 1;
  check(p11->C_GetSlotList(CK_TRUE, &slot, &n), "C_GetSlotList");
  reset_token();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool ready = (setup(), true);
  (void)ready;
  // Objects that cannot be destroyed (CKA_DESTROYABLE false) pile up: start afresh now and then.
  if (++runs_since_reset > 2000) reset_token();

  fuzz::Reader in(data, size);
  auto t = decode_template(in, 0);
  auto q = decode_query(in);

  CK_OBJECT_HANDLE created = CK_INVALID_HANDLE;
  if (p11->C_CreateObject(session, t->data(), t->count(), &created) == CKR_OK) {
    get_attributes(created, *q);
    (void)p11->C_SetAttributeValue(session, created, t->data(), t->count());
    get_attributes(created, *q);
    (void)p11->C_DestroyObject(session, created);
  }

  if (p11->C_FindObjectsInit(session, t->data(), t->count()) == CKR_OK) {
    CK_OBJECT_HANDLE found[4];
    CK_ULONG n = 0;
    (void)p11->C_FindObjects(session, found, std::size(found), &n);
    (void)p11->C_FindObjectsFinal(session);
  }

  const CK_OBJECT_HANDLE fixed[] = {aes_key, ec_priv, ec_pub};
  const CK_OBJECT_HANDLE target = fixed[in.u8() % std::size(fixed)];
  get_attributes(target, *q);
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  if (p11->C_CopyObject(session, target, t->data(), t->count(), &copy) == CKR_OK) {
    (void)p11->C_SetAttributeValue(session, copy, t->data(), t->count());
    get_attributes(copy, *q);
    if (target != ec_pub) expect_secret(copy, "a copy of a sensitive key");
    (void)p11->C_DestroyObject(session, copy);
  }
  if (target != ec_pub) {
    (void)p11->C_SetAttributeValue(session, target, t->data(), t->count());
    expect_secret(target, "a sensitive key");
  }
  return 0;
}
