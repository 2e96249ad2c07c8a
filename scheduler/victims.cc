#include "scheduler/victims.h"

#include <algorithm>

namespace joule::scheduler {

bool MorePreemptable(const VictimKey& a, const VictimKey& b) {
  // kSpot (2) before kOnDemand (1); lower priority; later start; id.
  if (a.cls != b.cls) return a.cls > b.cls;
  if (a.priority != b.priority) return a.priority < b.priority;
  if (a.start != b.start) return a.start > b.start;
  return a.id < b.id;
}

std::optional<std::vector<size_t>> MinimalVictims(
    const VictimNeed& need, absl::Span<const VictimCandidate> candidates) {
  const size_t n = candidates.size();
  const size_t dims = 1 + need.power_mw.size();
  auto value = [&](size_t i, size_t dim) -> int64_t {
    if (dim == 0) return candidates[i].gpus;
    const std::vector<int64_t>& p = candidates[i].power_mw;
    return dim - 1 < p.size() ? p[dim - 1] : 0;
  };
  auto more_preemptable = [&](size_t x, size_t y) {
    return MorePreemptable(*candidates[x].key, *candidates[y].key);
  };
  std::vector<int64_t> missing(dims);
  missing[0] = need.gpus;
  for (size_t d = 1; d < dims; ++d) missing[d] = need.power_mw[d - 1];
  std::vector<char> taken(n, 0);
  std::vector<size_t> chosen;
  for (size_t dim = 0; dim < dims; ++dim) {
    if (missing[dim] <= 0) continue;
    std::vector<size_t> by_value;
    for (size_t i = 0; i < n; ++i) {
      if (!taken[i] && value(i, dim) > 0) by_value.push_back(i);
    }
    std::sort(by_value.begin(), by_value.end(), [&](size_t x, size_t y) {
      const int64_t vx = value(x, dim), vy = value(y, dim);
      if (vx != vy) return vx > vy;
      return more_preemptable(x, y);
    });
    // m: the fewest victims that can cover this dimension.
    int64_t sum = 0;
    size_t m = 0;
    while (m < by_value.size() && sum < missing[dim]) {
      sum += value(by_value[m++], dim);
    }
    if (sum < missing[dim]) return std::nullopt;
    std::vector<size_t> pick;
    if (by_value.size() > kMaxRefined) {
      pick.assign(by_value.begin(), by_value.begin() + m);
    } else {
      // The most preemptable set of m: take each victim, in preemptability
      // order, when m victims including it (and those taken) still cover.
      std::vector<size_t> by_pref = by_value;
      std::sort(by_pref.begin(), by_pref.end(), more_preemptable);
      std::vector<char> out(n, 0);  // taken or passed over
      int64_t have = 0;
      for (size_t v : by_pref) {
        if (pick.size() == m || have >= missing[dim]) break;
        int64_t best = have + value(v, dim);
        size_t slots = m - pick.size() - 1;
        for (size_t u : by_value) {
          if (slots == 0 || best >= missing[dim]) break;
          if (out[u] || u == v) continue;
          best += value(u, dim);
          --slots;
        }
        out[v] = 1;
        if (best >= missing[dim]) {
          pick.push_back(v);
          have += value(v, dim);
        }
      }
    }
    for (size_t v : pick) {
      taken[v] = 1;
      chosen.push_back(v);
      for (size_t d = 0; d < dims; ++d) missing[d] -= value(v, d);
    }
  }
  std::sort(chosen.begin(), chosen.end(), more_preemptable);
  return chosen;
}

VictimSetCost CostOf(absl::InlinedVector<const VictimKey*, 4> keys,
                     size_t nodes) {
  std::sort(keys.begin(), keys.end(),
            [](const VictimKey* a, const VictimKey* b) {
              return MorePreemptable(*b, *a);  // most valuable first
            });
  VictimSetCost c;
  c.victims = keys.size();
  c.nodes = nodes;
  c.keys = std::move(keys);
  return c;
}

int CompareVictims(const VictimSetCost& a, const VictimSetCost& b) {
  if (a.victims != b.victims) return a.victims < b.victims ? -1 : 1;
  if (a.nodes != b.nodes) return a.nodes < b.nodes ? -1 : 1;
  for (size_t i = 0; i < a.keys.size() && i < b.keys.size(); ++i) {
    if (MorePreemptable(*a.keys[i], *b.keys[i])) return -1;
    if (MorePreemptable(*b.keys[i], *a.keys[i])) return 1;
  }
  return 0;
}

}  // namespace joule::scheduler
