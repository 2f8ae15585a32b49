// Preloaded by the ASan test setups (meson.build): dlclose() of OpenSC's pkcs11-spy.so is a no-op,
// so that LeakSanitizer can still name it at exit. The spy keeps blocks in its globals that it
// never frees; once it is unloaded their stacks read "<unknown module>" and no suppression can
// match them (tests/sanitize/lsan.supp then names the spy). Every other library closes as usual.
#include <dlfcn.h>
#include <link.h>

#include <cstring>

extern "C" __attribute__((visibility("default"))) int dlclose(void* handle) {
  static auto* real = reinterpret_cast<int (*)(void*)>(dlsym(RTLD_NEXT, "dlclose"));
  link_map* lm = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && std::strstr(lm->l_name, "/pkcs11-spy.so"))
    return 0;
  return real(handle);
}
