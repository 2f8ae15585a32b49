#include "azure/rotation_policy.h"

#include <regex>

#include "azure/json.h"
#include "azure/util.h"

namespace cdcp11::azure {
namespace {

constexpr const char* kOp = "set rotation policy";

const char* action_name(RotationAction a) { return a == RotationAction::rotate ? "Rotate" : "Notify"; }

Error malformed(const std::string& why) { return make_error(ErrorKind::config, kOp, why); }

}  // namespace

bool iso8601_duration_valid(std::string_view s) {
  static const std::regex re("^P(?!$)(\\d+Y)?(\\d+M)?(\\d+W)?(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+S)?)?$");
  return std::regex_match(s.begin(), s.end(), re);
}

Result<SecureBytes, Error> rotation_policy_body(const RotationPolicy& p) {
  auto check = [](const std::string& d, const char* what) -> Result<void, Error> {
    if (!iso8601_duration_valid(d))
      return fail(malformed(std::string(what) + " '" + d + "' is not an ISO 8601 duration (e.g. P90D, P3M, P1Y)"));
    return {};
  };
  if (!p.expiry_time.empty()) CDC_TRY(check(p.expiry_time, "expiryTime"));
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  w.Key("lifetimeActions");
  w.StartArray();
  for (const auto& a : p.lifetime_actions) {
    const bool after = !a.time_after_create.empty(), before = !a.time_before_expiry.empty();
    if (after == before)
      return fail(malformed(std::string("a ") + action_name(a.action) +
                            " action needs exactly one trigger: timeAfterCreate or timeBeforeExpiry"));
    if (after && a.action == RotationAction::notify)
      return fail(malformed("timeAfterCreate applies to the Rotate action only; Notify takes timeBeforeExpiry"));
    CDC_TRY(check(after ? a.time_after_create : a.time_before_expiry, after ? "timeAfterCreate" : "timeBeforeExpiry"));
    w.StartObject();
    w.Key("trigger");
    w.StartObject();
    w.Key(after ? "timeAfterCreate" : "timeBeforeExpiry");
    write_string(w, after ? a.time_after_create : a.time_before_expiry);
    w.EndObject();
    w.Key("action");
    w.StartObject();
    w.Key("type");
    w.String(action_name(a.action));
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.Key("attributes");
  w.StartObject();
  if (!p.expiry_time.empty()) {
    w.Key("expiryTime");
    write_string(w, p.expiry_time);
  }
  w.EndObject();
  w.EndObject();
  return to_body(b);
}

bool parse_rotation_policy(std::string_view json, RotationPolicy& out) {
  JsonDocument doc;
  if (!parse_json(json, doc) || !doc.IsObject()) return false;
  RotationPolicy p;
  p.id = str_member(doc, "id");
  if (const JsonValue* actions = member(doc, "lifetimeActions")) {
    if (!actions->IsArray()) return false;
    for (const auto& a : actions->GetArray()) {
      const JsonValue* action = member(a, "action");
      const JsonValue* trigger = member(a, "trigger");
      if (!action || !trigger || !trigger->IsObject()) return false;
      LifetimeAction la;
      // The spec's enum says "rotate"/"notify", the service and its examples "Rotate"/"Notify".
      const std::string type = to_lower(str_member(*action, "type"));
      if (type == "rotate") la.action = RotationAction::rotate;
      else if (type == "notify") la.action = RotationAction::notify;
      else return false;
      la.time_after_create = str_member(*trigger, "timeAfterCreate");
      la.time_before_expiry = str_member(*trigger, "timeBeforeExpiry");
      p.lifetime_actions.push_back(std::move(la));
    }
  }
  if (const JsonValue* attrs = member(doc, "attributes")) {
    p.expiry_time = str_member(*attrs, "expiryTime");
    p.created = int_member(*attrs, "created");
    p.updated = int_member(*attrs, "updated");
  }
  out = std::move(p);
  return true;
}

}  // namespace cdcp11::azure
