#include "billing/rating.h"

#include <algorithm>
#include <map>
#include <set>

#include "billing/strings.h"

namespace joule::billing {

int64_t OverlapSeconds(Interval a, Interval b) {
  int64_t s = std::max(a.start, b.start);
  int64_t e = std::min(a.end, b.end);
  return e > s ? e - s : 0;
}

std::vector<Interval> SplitAt(Interval interval,
                              absl::Span<const int64_t> breaks) {
  std::vector<Interval> out;
  if (interval.end <= interval.start) return out;
  std::vector<int64_t> cuts;
  for (int64_t b : breaks) {
    if (b > interval.start && b < interval.end) cuts.push_back(b);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  int64_t at = interval.start;
  for (int64_t c : cuts) {
    out.push_back({at, c});
    at = c;
  }
  out.push_back({at, interval.end});
  return out;
}

std::vector<MonthPiece> SplitByMonth(Interval interval) {
  std::vector<MonthPiece> out;
  int64_t at = interval.start;
  while (at < interval.end) {
    Period p = Period::OfUnixSeconds(at);
    int64_t e = std::min(interval.end, p.EndUnixSeconds());
    out.push_back({p, {at, e}});
    at = e;
  }
  return out;
}

absl::Status ValidateTiers(absl::Span<const Tier> tiers,
                           std::string_view field) {
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (i == 0 && tiers[i].from_tokens != 0) {
      return absl::InvalidArgumentError(
          Cat(field, "[0].from_tokens: the first tier must start at 0"));
    }
    if (i > 0 && tiers[i].from_tokens <= tiers[i - 1].from_tokens) {
      return absl::InvalidArgumentError(
          Cat(field, "[", i,
              "].from_tokens: tiers must start at strictly increasing counts"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TierSlice>> ApplyTiers(absl::Span<const Tier> tiers,
                                                  uint64_t prior,
                                                  uint64_t tokens) {
  std::vector<TierSlice> out;
  uint64_t end;
  if (__builtin_add_overflow(prior, tokens, &end)) {
    return absl::OutOfRangeError("monthly token count overflows uint64");
  }
  if (tiers.empty()) {
    return absl::InvalidArgumentError("ApplyTiers: no tiers");
  }
  for (size_t i = 0; i < tiers.size(); ++i) {
    // Tier i covers [from_i, from_{i+1}) of the monthly count.
    uint64_t lo = tiers[i].from_tokens;
    bool last = i + 1 == tiers.size();
    uint64_t hi = last ? UINT64_MAX : tiers[i + 1].from_tokens;
    uint64_t s = std::max(prior, lo);
    uint64_t e = last ? end : std::min(end, hi);
    if (e > s) out.push_back({i, e - s});
  }
  return out;
}

std::vector<SweepSegment> SweepReserved(
    absl::Span<const GpuInterval> usage, absl::Span<const GpuInterval> commits,
    absl::Span<const int64_t> extra_breaks) {
  // Deltas of running and committed GPUs at each event time.
  std::map<int64_t, std::pair<int64_t, int64_t>> deltas;
  for (const GpuInterval& u : usage) {
    if (u.interval.end <= u.interval.start || u.gpus == 0) continue;
    deltas[u.interval.start].first += u.gpus;
    deltas[u.interval.end].first -= u.gpus;
  }
  for (const GpuInterval& c : commits) {
    if (c.interval.end <= c.interval.start || c.gpus == 0) continue;
    deltas[c.interval.start].second += c.gpus;
    deltas[c.interval.end].second -= c.gpus;
  }
  for (int64_t b : extra_breaks) deltas.try_emplace(b);
  std::vector<SweepSegment> out;
  int64_t running = 0, committed = 0;
  for (auto it = deltas.begin(); it != deltas.end(); ++it) {
    running += it->second.first;
    committed += it->second.second;
    auto next = std::next(it);
    if (next == deltas.end()) break;
    if (running > 0) {
      out.push_back({{it->first, next->first}, running, committed});
    }
  }
  return out;
}

std::vector<AttributedUsage> AttributeReserved(
    absl::Span<const GpuInterval> usage,
    absl::Span<const GpuInterval> commits) {
  std::vector<AttributedUsage> out(usage.size());
  // Events: +/- committed GPUs, attempts starting / ending (by index).
  std::map<int64_t, int64_t> commit_delta;
  std::map<int64_t, std::vector<std::pair<size_t, bool>>> moves;
  for (const GpuInterval& c : commits) {
    if (c.interval.end <= c.interval.start || c.gpus == 0) continue;
    commit_delta[c.interval.start] += c.gpus;
    commit_delta[c.interval.end] -= c.gpus;
  }
  std::set<int64_t> times;
  for (const auto& [t, d] : commit_delta) times.insert(t);
  for (size_t i = 0; i < usage.size(); ++i) {
    const GpuInterval& u = usage[i];
    if (u.interval.end <= u.interval.start || u.gpus == 0) continue;
    moves[u.interval.start].push_back({i, true});
    moves[u.interval.end].push_back({i, false});
    times.insert(u.interval.start);
    times.insert(u.interval.end);
  }
  std::set<size_t> active;  // by priority = index order
  int64_t committed = 0;
  for (auto it = times.begin(); it != times.end(); ++it) {
    auto c = commit_delta.find(*it);
    if (c != commit_delta.end()) committed += c->second;
    auto m = moves.find(*it);
    if (m != moves.end()) {
      for (const auto& [i, starts] : m->second) {
        if (starts) {
          active.insert(i);
        } else {
          active.erase(i);
        }
      }
    }
    auto next = std::next(it);
    if (next == times.end()) break;
    const int64_t len = *next - *it;
    int64_t left = committed;
    for (size_t i : active) {
      const int64_t g = usage[i].gpus;
      const int64_t covered = std::min(g, std::max<int64_t>(left, 0));
      left -= covered;
      out[i].covered_gpu_seconds += covered * len;
      out[i].overage_gpu_seconds += (g - covered) * len;
    }
  }
  return out;
}

absl::StatusOr<int64_t> ContractValueMicros(const ContractTerms& c) {
  int64_t hours = c.term.seconds() / kSecondsPerHour;
  int64_t gpu_hours, value;
  if (__builtin_mul_overflow(static_cast<int64_t>(c.gpus), hours, &gpu_hours) ||
      __builtin_mul_overflow(gpu_hours, c.rate_micros, &value)) {
    return absl::OutOfRangeError(
        "contract value overflows int64 micro-dollars");
  }
  return value;
}

absl::StatusOr<ExactAmount> CommittedAmount(const ContractTerms& c,
                                            Interval window) {
  ExactAmount a(kSecondsPerHour);
  __int128 gpu_seconds =
      static_cast<__int128>(c.gpus) * OverlapSeconds(c.term, window);
  absl::Status s = a.AddProduct(gpu_seconds, c.rate_micros);
  if (!s.ok()) return s;
  return a;
}

absl::StatusOr<BacklogFigures> ComputeBacklog(const ContractTerms& c,
                                              int64_t as_of, int64_t horizon) {
  // C(t): recognised value through t, rounded once to cents.
  auto cumulative = [&](int64_t t) -> absl::StatusOr<int64_t> {
    absl::StatusOr<ExactAmount> a =
        CommittedAmount(c, {c.term.start, std::max(c.term.start, t)});
    if (!a.ok()) return a.status();
    return a->ToCents();
  };
  absl::StatusOr<int64_t> value = cumulative(c.term.end);
  absl::StatusOr<int64_t> recognized = cumulative(as_of);
  absl::StatusOr<int64_t> at_horizon = cumulative(std::max(as_of, horizon));
  for (const auto* s : {&value, &recognized, &at_horizon}) {
    if (!s->ok()) return s->status();
  }
  BacklogFigures f;
  f.value_cents = *value;
  f.recognized_cents = *recognized;
  f.backlog_cents = *value - *recognized;
  f.next_12_months_cents = *at_horizon - *recognized;
  f.after_12_months_cents = *value - *at_horizon;
  return f;
}

}  // namespace joule::billing
