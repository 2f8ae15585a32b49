#include "tools/cdcctl/output.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <sys/stat.h>

#include <cctype>
#include <iostream>

#include "common/atomic_file.h"

namespace cdcp11::cdcctl {

int error_out(const GlobalOptions& global, const std::string& msg) {
  if (global.json) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.StartObject();
    w.Key("error");
    w.String(msg.c_str(), static_cast<rapidjson::SizeType>(msg.size()));
    w.EndObject();
    std::cout << sb.GetString() << '\n';
  } else {
    std::cerr << "cdcctl: " << msg << '\n';
  }
  return 1;
}

std::string capitalised(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

Result<void, std::string> write_private_file(const std::string& path, std::string_view content) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) return fail(path + " exists and is not a regular file.");
  auto r = write_file_atomically(path, content, 0600);
  if (!r) return fail(capitalised(r.error()) + ".");
  return {};
}

}  // namespace cdcp11::cdcctl
