#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace joule {

// Published board power of common data-centre GPUs (SXM/OAM parts), used by
// the default cluster config, the simulated agent backend and joule-sim.
struct KnownGpu {
  absl::string_view model;
  int64_t tdp_mw;
  int64_t min_limit_mw;
  int64_t max_limit_mw;
  int64_t idle_mw;
  uint64_t memory_gib;
};

inline constexpr KnownGpu kKnownGpus[] = {
    {"H100", 700'000, 200'000, 700'000, 70'000, 80},
    {"H200", 700'000, 200'000, 700'000, 75'000, 141},
    {"B200", 1'000'000, 200'000, 1'000'000, 120'000, 180},
    {"A100", 400'000, 100'000, 400'000, 50'000, 80},
    {"L40S", 350'000, 100'000, 350'000, 35'000, 48},
};

inline const KnownGpu* FindKnownGpu(absl::string_view model) {
  for (const KnownGpu& g : kKnownGpus) {
    if (g.model == model) return &g;
  }
  return nullptr;
}

// The catalogue name that a driver's product name contains ("NVIDIA H100
// 80GB HBM3" -> "H100"), or the product name itself when none matches.
inline std::string CanonicalGpuModel(absl::string_view product_name) {
  for (const KnownGpu& g : kKnownGpus) {
    if (product_name.find(g.model) != absl::string_view::npos) {
      return std::string(g.model);
    }
  }
  return std::string(product_name);
}

}  // namespace joule
