#pragma once

// The prices, contracts and tenant weights of a joule-sim run, read from a
// small line-based text file (documented in docs/evaluation.md):
//
//   # comment
//   gpu-hour H100 on-demand 2.49
//   gpu-hour H100 spot 0.99
//   inference llama-70b input=0:0.60,1000000000:0.50 output=0:0.80
//   per-request=0.0001 contract acme H100 64 2026-01-01 2027-01-01 1.80
//   overage=2.20 tenant acme weight=2
//
// Prices are USD decimal strings as the ledger takes them (at most 6
// decimals); they take effect at the simulation start.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "billing/ledger.h"
#include "joule/v1/joule.pb.h"

namespace joule::sim {

// Parsed pricing file. Plain data.
struct PricingFile {
  std::vector<v1::Price> prices;  // effective_from unset
  std::vector<v1::Contract> contracts;
  absl::flat_hash_map<std::string, uint32_t> tenant_weights;
};

// Errors name "FILE:LINE: what".
absl::StatusOr<PricingFile> ParsePricingFile(absl::string_view text,
                                             absl::string_view filename);

// Sets the prices (effective at `start`) and creates the contracts. The
// ledger's clock must read `start`.
absl::Status ApplyPricing(const PricingFile& pricing, absl::Time start,
                          billing::Ledger* ledger);

}  // namespace joule::sim
