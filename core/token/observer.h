// What a token tells about its keys to the services that follow them (the mirror): a key about
// to be made, made, destroyed, and the user's login. The token calls these without holding its
// lock, except before_key_made, which must not call back into the token.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>

#include "core/attributes.h"
#include "core/errors.h"

namespace cdcp11::core {

class Session;

class KeyObserver {
 public:
  virtual ~KeyObserver() = default;
  // Before a key with these final attributes is made: refuse what could never be followed
  // (no network call). rsa_bits is 0 when unknown.
  virtual R<void> before_key_made(const AttrMap& attrs, std::size_t rsa_bits) = 0;
  // A key became an object of the token (generated, created, copied, unwrapped).
  virtual R<void> key_made(Session& s, CK_OBJECT_HANDLE h) = 0;
  // A token key was destroyed; attrs are its last attributes.
  virtual void key_destroyed(const std::string& uid, const AttrMap& attrs) = 0;
  virtual void user_logged_in() = 0;
  // Held while the token logs out or closes: work in flight that needs the login finishes first.
  virtual std::unique_lock<std::mutex> hold_for_logout() = 0;
};

}  // namespace cdcp11::core
