// The PKCS#11 side of the benchmarks, for any module: loading it (through hsm/'s client), the
// token it names, and the Column that measures the operations with raw function-list calls
// (preallocated buffers, no length queries: the calls an application makes, nothing more).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bench/ops.h"
#include "core/attributes.h"
#include "hsm/attributes.h"
#include "hsm/module.h"
#include "hsm/session.h"

namespace cdcp11::bench {

// A module under test, named on the command line as
//   name=NAME,path=/path/to/module.so,token=LABEL[,args=STRING]
// (args, when given, is C_Initialize's pReserved string). The environment the module reads
// (CDCP11_CONF, SOFTHSM2_CONF, ...) is the process's own.
struct ModuleSpec {
  std::string name, path, token;
  std::optional<std::string> args;
};
BR<ModuleSpec> parse_module_spec(std::string_view s);

// The PINs of the benchmark's throwaway tokens: $CDCBENCH_USER_PIN and $CDCBENCH_SO_PIN, else
// fixed values. Never printed.
SecureBytes user_pin();
SecureBytes so_pin();

std::string describe(const hsm::Error& e);

// Fills a core::AttrMap (hsm/ uses core's header only).
class Tmpl {
 public:
  Tmpl& ul(CK_ATTRIBUTE_TYPE t, CK_ULONG v) { m_.set(t, hsm::ulong_value(v)); return *this; }
  Tmpl& b(CK_ATTRIBUTE_TYPE t, bool v) { m_.set(t, hsm::bool_value(v)); return *this; }
  Tmpl& bytes(CK_ATTRIBUTE_TYPE t, ByteView v) { m_.set(t, v); return *this; }
  Tmpl& str(CK_ATTRIBUTE_TYPE t, std::string_view s) { m_.set(t, view(s)); return *this; }
  const core::AttrMap& map() const { return m_; }

 private:
  core::AttrMap m_;
};

// The spec's module loaded, and a session on its token logged in as the user (kept open: the
// login lasts while a session does).
struct P11Token {
  ModuleSpec spec;
  std::shared_ptr<hsm::Module> module;
  CK_SLOT_ID slot = 0;
  std::optional<hsm::Session> session;

  static BR<P11Token> open(const ModuleSpec& spec);
  BR<hsm::Session> new_session() const;
  // "manufacturer description version" of the module, for the results' header.
  std::string module_info() const;
};

// Initialises the spec's token (C_InitToken with the SO PIN, C_InitPIN with the user PIN):
// the token of that label if it is present but not initialised, else the first token that is
// not initialised (SoftHSM2's free slot). A token already initialised is left alone.
BR<void> init_token(const ModuleSpec& spec);

// Generates the keys the operations use and returns the column: token objects (CKA_TOKEN true,
// as applications keep keys) or session objects. cdcbench uses session keys by default: that
// is how issue #13's figures were taken, and the stricter comparison, as SoftHSM2 2.6.1 checks
// a token object's file on every use (AES-GCM 16 B: about a third of its session-key rate).
BR<std::unique_ptr<Column>> make_p11_column(const ModuleSpec& spec, bool token_keys);

}  // namespace cdcp11::bench
