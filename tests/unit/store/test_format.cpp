#include <doctest/doctest.h>

#include "softtoken/store/crc32c.h"
#include "softtoken/store/record_format.h"

using namespace cdcp11;
using namespace cdcp11::store;

TEST_CASE("crc32c matches the standard check value and chains") {
  CHECK(crc32c(view("123456789")) == 0xE3069283u);
  CHECK(crc32c(view("")) == 0u);
  // 32 zero bytes: RFC 3720 B.4 test vector.
  Bytes zeros(32, 0);
  CHECK(crc32c(zeros) == 0x8A9136AAu);
  Bytes ff(32, 0xFF);
  CHECK(crc32c(ff) == 0x62A8AB43u);
  CHECK(crc32c(view("56789"), crc32c(view("1234"))) == 0xE3069283u);
}

TEST_CASE("record encode/decode round-trips and rejects any damage") {
  const std::string name = "0123456789abcdef0123456789abcdef";
  const Bytes payload = to_bytes(view("some object attributes"));
  const Bytes file = encode_record(name, payload);
  REQUIRE(file.size() == kHeaderSize + payload.size());

  auto ok = decode_record(name, file);
  REQUIRE(ok);
  CHECK(*ok == payload);

  SUBCASE("every single-byte flip is detected") {
    for (std::size_t i = 0; i < file.size(); ++i) {
      Bytes bad = file;
      bad[i] ^= 0x01;
      CHECK_MESSAGE(!decode_record(name, bad), "flip at offset " << i);
    }
  }
  SUBCASE("truncation is detected") {
    for (std::size_t n : {std::size_t(0), std::size_t(5), kHeaderSize, file.size() - 1}) {
      Bytes bad(file.begin(), file.begin() + static_cast<long>(n));
      CHECK(!decode_record(name, bad));
    }
  }
  SUBCASE("a record under another name is rejected") {
    CHECK(!decode_record("ffffffffffffffffffffffffffffffff", file));
  }
  SUBCASE("an unknown record version is named in the error") {
    Bytes bad = file;
    bad[4] = 2;
    auto r = decode_record(name, bad);
    REQUIRE(!r);
    CHECK(r.error().reason.find("version 2") != std::string::npos);
  }
  SUBCASE("empty payload") {
    auto e = decode_record("meta", encode_record("meta", {}));
    REQUIRE(e);
    CHECK(e->empty());
  }
}
