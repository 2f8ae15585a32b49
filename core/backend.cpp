#include "core/backend.h"

namespace cdcp11::core {

std::vector<SlotMechanism> slot_mechanisms(Backend* backend) {
  if (backend)
    if (auto own = backend->mechanisms()) return std::move(*own);
  std::vector<SlotMechanism> all;
  for (auto& e : mechanism_table()) all.push_back({e.type, e.min_key, e.max_key, e.flags});
  return all;
}

}  // namespace cdcp11::core
