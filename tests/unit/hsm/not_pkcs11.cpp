// A shared object that is not a PKCS#11 module.
extern "C" __attribute__((visibility("default"))) int not_pkcs11() { return 0; }
