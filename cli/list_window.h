#pragma once

// --since and --limit, the window of joulectl's list commands (docs/cli.md,
// "Lists"): --since D keeps the rows whose time (a job's submission, a
// node's registration, a tenant's or token's creation, a price's effective
// time, a contract's creation) is within the last D; --limit N then keeps
// N rows: the latest N by that time, or the first N of a list in name
// order. 0 / empty: no bound. Pure; thread-compatible.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace joule::cli {

// The most rows --limit may ask for.
inline constexpr uint32_t kMaxListLimit = 1'000'000;

struct ListWindow {
  std::string since;   // a duration, e.g. "1h"; empty: all
  uint32_t limit = 0;  // 0: all
};

// Adds --since and --limit (checked to 0..kMaxListLimit: a bad value is
// exit 2 with one line) to `cmd`.
void AddListWindow(CLI::App* cmd, ListWindow* w, const std::string& since_help,
                   const std::string& limit_help);

// The oldest time --since keeps: now - since; InfinitePast when empty.
// INVALID_ARGUMENT naming --since for a bad or negative duration.
absl::StatusOr<absl::Time> SinceCutoff(const std::string& since,
                                       absl::Time now);

// Keeps the items whose time_of(item) >= cutoff, in order; then, with
// `latest`, the `limit` items of the latest times (ties: the later in the
// list), else the first `limit`; the kept ones stay in list order.
template <typename T, typename TimeOf>
void ApplyWindow(google::protobuf::RepeatedPtrField<T>* items,
                 absl::Time cutoff, uint32_t limit, bool latest,
                 TimeOf time_of) {
  if (cutoff != absl::InfinitePast()) {
    google::protobuf::RepeatedPtrField<T> kept;
    for (T& x : *items) {
      if (time_of(x) >= cutoff) *kept.Add() = std::move(x);
    }
    items->Swap(&kept);
  }
  const int n = items->size();
  if (limit == 0 || n <= static_cast<int>(limit)) return;
  if (!latest) {
    items->DeleteSubrange(static_cast<int>(limit), n - static_cast<int>(limit));
    return;
  }
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return time_of(items->Get(a)) < time_of(items->Get(b));
  });
  std::vector<bool> keep(n, false);
  for (int i = n - static_cast<int>(limit); i < n; ++i) keep[order[i]] = true;
  google::protobuf::RepeatedPtrField<T> kept;
  for (int i = 0; i < n; ++i) {
    if (keep[i]) *kept.Add() = std::move(*items->Mutable(i));
  }
  items->Swap(&kept);
}

}  // namespace joule::cli
