#include "cli/arrays.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/format.h"

namespace joule::cli {
namespace {

absl::StatusOr<uint32_t> Index(absl::string_view s, absl::string_view what) {
  uint32_t v = 0;
  if (s.empty() || !std::all_of(s.begin(), s.end(), ::isdigit) ||
      !absl::SimpleAtoi(s, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--array: ", what, " \"", s, "\" is not a number 0..4294967295"));
  }
  return v;
}

std::vector<std::string> Row(const v1::Job& j) {
  std::vector<std::string> nodes;
  for (const auto& a : j.allocations()) nodes.push_back(a.node());
  return {
      j.id(),
      j.spec().tenant(),
      j.spec().name(),
      JobStateName(j.state()),
      ServiceClassName(j.effective_class()),
      absl::StrCat(j.spec().gpus_per_node() * std::max(1u, j.spec().nodes())),
      nodes.empty() ? "-" : absl::StrJoin(nodes, ","),
      j.reason()};
}

}  // namespace

absl::StatusOr<v1::JobArray> ParseArrayFlag(absl::string_view s) {
  v1::JobArray a;
  absl::string_view range = s;
  const size_t pct = s.find('%');
  if (pct != absl::string_view::npos) {
    range = s.substr(0, pct);
    auto max = Index(s.substr(pct + 1), "MAX");
    if (!max.ok()) return max.status();
    if (*max == 0) {
      return absl::InvalidArgumentError("--array: MAX after % must be >= 1");
    }
    a.set_max_running(*max);
  }
  const size_t dash = range.find('-');
  auto first = Index(range.substr(0, dash), "first index");
  if (!first.ok()) return first.status();
  auto last = dash == absl::string_view::npos
                  ? first
                  : Index(range.substr(dash + 1), "last index");
  if (!last.ok()) return last.status();
  if (*first > *last) {
    return absl::InvalidArgumentError(
        absl::StrCat("--array: first index ", *first, " is above the last ",
                     *last, " (want A-B with A <= B)"));
  }
  a.set_first(*first);
  a.set_last(*last);
  return a;
}

std::vector<std::vector<std::string>> JobRows(
    const google::protobuf::RepeatedPtrField<v1::Job>& jobs, bool expand) {
  std::vector<std::vector<std::string>> rows;
  struct Fold {
    size_t row = 0;  // where the array's row is
    uint32_t lo = UINT32_MAX, hi = 0;
    std::map<int, uint32_t> states;  // JobState -> tasks
    std::set<std::string> nodes;
  };
  absl::flat_hash_map<std::string, Fold> folds;
  std::vector<std::string> order;  // array ids in row order
  for (const v1::Job& j : jobs) {
    if (expand || j.array_id().empty()) {
      rows.push_back(Row(j));
      continue;
    }
    auto [it, added] = folds.try_emplace(j.array_id());
    Fold& f = it->second;
    if (added) {
      f.row = rows.size();
      rows.push_back(Row(j));
      order.push_back(j.array_id());
    }
    f.lo = std::min(f.lo, j.array_index());
    f.hi = std::max(f.hi, j.array_index());
    ++f.states[j.state()];
    for (const auto& a : j.allocations()) f.nodes.insert(a.node());
  }
  for (const std::string& id : order) {
    const Fold& f = folds[id];
    std::vector<std::string>& r = rows[f.row];
    r[0] = absl::StrCat(id, "_[", f.lo, "-", f.hi, "]");
    r[3] =
        f.states.size() == 1
            ? JobStateName(static_cast<v1::JobState>(f.states.begin()->first))
            : "mixed";
    r[6] = f.nodes.empty() ? "-" : absl::StrJoin(f.nodes, ",");
    std::vector<std::string> counts;
    for (const auto& [state, n] : f.states) {
      counts.push_back(
          absl::StrCat(n, " ", JobStateName(static_cast<v1::JobState>(state))));
    }
    r[7] = absl::StrJoin(counts, ", ");
  }
  return rows;
}

}  // namespace joule::cli
