#include "tools/cdcctl/output.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <iostream>

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

}  // namespace cdcp11::cdcctl
