// base64url (RFC 4648 §5) without padding, as JWK/JOSE and Key Vault use it.
//
// A small codec of our own rather than EVP_EncodeBlock/EVP_DecodeBlock: those speak the
// standard alphabet with padding, decode unpadded input wrongly (they need a multiple of 4)
// and report padded lengths with trailing zero bytes, so the translation and length fix-ups
// would be longer and subtler than this codec. It also writes straight into SecureBytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"

namespace cdcp11::azure {

std::string b64url_encode(ByteView data);
// Accepts the URL alphabet, tolerates trailing '=' padding; rejects anything else
// (other characters, impossible lengths, non-zero leftover bits).
std::optional<Bytes> b64url_decode(std::string_view text);
bool b64url_decode(std::string_view text, SecureBytes& out);
// Standard alphabet with padding (HTTP Basic and friends).
std::string b64_encode(ByteView data);

}  // namespace cdcp11::azure
