"""Forwarding details of an HSM group (SoftHSM2 behind libcdcp11.so), issue #9:
- a key with CKA_ALWAYS_AUTHENTICATE: C_Login(CKU_CONTEXT_SPECIFIC) after the operation's init
  reaches the HSM session that runs the operation (SoftHSM2 2.6.1 enforces the re-authentication
  itself, so a login that went elsewhere leaves its C_Sign at CKR_USER_NOT_LOGGED_IN), and a wrong
  PIN comes back as the HSM says;
- fork: a child that calls C_Initialize again gets a forwarding backend of its own (the HSM module
  initialised again, no parent session or handle reused) and signs; the parent still signs after."""
import os
import sys
import unittest

import PyKCS11

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from test_hsm_backend import PIN, SOFTHSM, HsmGroup  # noqa: E402

P = PyKCS11
SLOT = 7
MECH = P.Mechanism(P.CKM_SHA256_RSA_PKCS)


def keypair(s, label, *priv_extra):
    pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_TOKEN, True),
             (P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)), (P.CKA_VERIFY, True),
             (P.CKA_LABEL, label)]
    priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_TOKEN, True),
              (P.CKA_PRIVATE, True), (P.CKA_SENSITIVE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label)]
    return s.generateKeyPair(pub_t, priv_t + list(priv_extra), P.Mechanism(P.CKM_RSA_PKCS_KEY_PAIR_GEN))


class Forwarding(unittest.TestCase):
    def setUp(self):
        h.require_module(self)
        if not os.path.exists(SOFTHSM):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        self.g = HsmGroup()
        self.addCleanup(self.g.cleanup)
        for k, v in (("SOFTHSM2_CONF", self.g.softhsm_conf), ("CDCP11_CONF", self.g.conf),
                     ("CDCP11_LOG_FILE", self.g.log)):
            os.environ[k] = v
        self.lib = P.PyKCS11Lib()
        self.lib.load(h.MODULE)
        self.addCleanup(self.unload)

    def unload(self):
        del self.lib  # C_Finalize: the next test's C_Initialize reads its own config

    def session(self, lib=None):
        s = (lib or self.lib).openSession(SLOT, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        try:
            s.login(PIN)
        except P.PyKCS11Error as e:
            if e.value != P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return s

    def log(self):
        with open(self.g.log) as f:
            return f.read()

    # ------------------------------------------------------------ context-specific login

    def sign_steps(self, s, key, data, *context_pins):
        """C_SignInit, then each C_Login(CKU_CONTEXT_SPECIFIC) (the CK_RV of each), then C_Sign."""
        rv = s.lib.C_SignInit(s.session, MECH.to_native(), key)
        self.assertEqual(rv, P.CKR_OK, h.ckr_name(rv))
        rvs = []
        for pin in context_pins:
            try:
                s.login(pin, user_type=P.CKU_CONTEXT_SPECIFIC)
                rvs.append(P.CKR_OK)
            except P.PyKCS11Error as e:
                rvs.append(e.value)
        sig = P.ckbytelist()
        rv = s.lib.C_Sign(s.session, P.ckbytelist(data), sig)
        if rv == P.CKR_OK:
            rv = s.lib.C_Sign(s.session, P.ckbytelist(data), sig)
        return rvs, rv, bytes(sig)

    def test_context_login_reaches_the_hsm_session_of_the_operation(self):
        s = self.session()
        pub, priv = keypair(s, "always-auth", (P.CKA_ALWAYS_AUTHENTICATE, True))
        self.assertTrue(s.getAttributeValue(priv, [P.CKA_ALWAYS_AUTHENTICATE])[0])
        # Signed only after the context login, which SoftHSM2 checks in the operation's session.
        rvs, rv, sig = self.sign_steps(s, priv, b"to be signed", PIN)
        self.assertEqual(rvs, [P.CKR_OK])
        self.assertEqual(rv, P.CKR_OK, h.ckr_name(rv))
        s.verify(pub, b"to be signed", sig, MECH)
        # Several operations at once (each in an HSM session of its own), each logged in for itself.
        s2 = self.session()
        rv = s2.lib.C_SignInit(s2.session, MECH.to_native(), priv)
        self.assertEqual(rv, P.CKR_OK)
        rvs, rv, sig = self.sign_steps(s, priv, b"second", PIN)
        self.assertEqual((rvs, rv), ([P.CKR_OK], P.CKR_OK))
        s2.login(PIN, user_type=P.CKU_CONTEXT_SPECIFIC)
        out = P.ckbytelist()
        self.assertEqual(s2.lib.C_Sign(s2.session, P.ckbytelist(b"third"), out), P.CKR_OK)
        self.assertEqual(s2.lib.C_Sign(s2.session, P.ckbytelist(b"third"), out), P.CKR_OK)
        s.verify(pub, b"third", bytes(out), MECH)

    def test_a_wrong_context_pin_comes_back_as_the_hsm_says_and_the_operation_waits(self):
        s = self.session()
        _, priv = keypair(s, "always-auth-2", (P.CKA_ALWAYS_AUTHENTICATE, True))
        rvs, rv, _ = self.sign_steps(s, priv, b"x", "0000", PIN)
        self.assertEqual(rvs, [P.CKR_PIN_INCORRECT, P.CKR_OK])
        self.assertEqual(rv, P.CKR_OK, h.ckr_name(rv))
        # Without the context login the operation is refused.
        rvs, rv, _ = self.sign_steps(s, priv, b"x")
        self.assertEqual(rv, P.CKR_USER_NOT_LOGGED_IN, h.ckr_name(rv))

    # ------------------------------------------------------------ fork

    def test_a_forked_child_initialises_again_and_signs_and_the_parent_still_signs(self):
        s = self.session()
        pub, priv = keypair(s, "forked")
        s.verify(pub, b"before", bytes(s.sign(priv, b"before", MECH)), MECH)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: PKCS#11 says it must call C_Initialize before anything else
            os.close(r)
            code = 1
            try:
                lib = P.PyKCS11Lib()
                lib.load(h.MODULE)  # C_Initialize in this process
                c = self.session(lib)
                [key] = c.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_LABEL, "forked")])
                [pk] = c.findObjects([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_LABEL, "forked")])
                c.verify(pk, b"child", bytes(c.sign(key, b"child", MECH)), MECH)
                c.closeSession()
                os.write(w, b"ok")
                code = 0
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                os.write(w, repr(e).encode()[:500])
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            said = f.read().decode()
        _, status = os.waitpid(pid, 0)
        self.assertEqual((said, os.waitstatus_to_exitcode(status)), ("ok", 0))
        # The parent's sessions were not touched by the child.
        s.verify(pub, b"after", bytes(s.sign(priv, b"after", MECH)), MECH)
        s2 = self.session()
        s2.verify(pub, b"after2", bytes(s2.sign(priv, b"after2", MECH)), MECH)


if __name__ == "__main__":
    unittest.main(verbosity=2)
