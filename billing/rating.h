#pragma once

// The pure rating arithmetic of the billing ledger: interval splitting,
// graduated tiers, the reserved-commitment sweep and backlog math. No
// storage, no clock, no floating point. Times are whole Unix seconds and every
// interval is half-open [start, end). See docs/billing.md.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "billing/money.h"
#include "billing/period.h"

namespace joule::billing {

inline constexpr int64_t kSecondsPerHour = 3600;
inline constexpr int64_t kTokensPerPriceUnit = 1'000'000;  // prices per 1M

struct Interval {
  int64_t start = 0;  // inclusive
  int64_t end = 0;    // exclusive
  int64_t seconds() const { return end > start ? end - start : 0; }
  friend bool operator==(const Interval&, const Interval&) = default;
};

// Length of the overlap of [a.start, a.end) and [b.start, b.end), >= 0.
int64_t OverlapSeconds(Interval a, Interval b);

// Splits `interval` at every break strictly inside it (breaks in any order,
// duplicates ignored). Returns the pieces in time order; an empty interval
// gives no piece.
std::vector<Interval> SplitAt(Interval interval,
                              absl::Span<const int64_t> breaks);

// The part of an interval inside one UTC month.
struct MonthPiece {
  Period period;
  Interval interval;
};
// Splits `interval` at UTC month boundaries.
std::vector<MonthPiece> SplitByMonth(Interval interval);

// One graduated tier: tokens from `from_tokens` (of the tenant's monthly
// count for that model and direction) on cost `rate_micros` per 1M tokens.
struct Tier {
  uint64_t from_tokens = 0;
  int64_t rate_micros = 0;
};
// Checks tiers: empty, or the first starts at 0 and from_tokens strictly
// increase. INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateTiers(absl::Span<const Tier> tiers,
                           std::string_view field);

struct TierSlice {
  size_t tier = 0;  // index into the tiers
  uint64_t tokens = 0;
  friend bool operator==(const TierSlice&, const TierSlice&) = default;
};
// Places `tokens` new tokens after `prior` tokens already counted this month
// onto the tiers: the tokens [prior, prior + tokens) are split at each tier's
// from_tokens. Slices with zero tokens are left out. OUT_OF_RANGE when
// prior + tokens overflows; tiers must be valid (ValidateTiers) and
// non-empty.
absl::StatusOr<std::vector<TierSlice>> ApplyTiers(absl::Span<const Tier> tiers,
                                                  uint64_t prior,
                                                  uint64_t tokens);

// GPUs held over an interval: a job attempt (running reserved GPUs) or a
// contract (committed GPUs).
struct GpuInterval {
  Interval interval;
  uint32_t gpus = 0;
};

// One elementary segment of the reserved sweep: between two consecutive
// event times nothing changes.
struct SweepSegment {
  Interval interval;
  int64_t running = 0;    // reserved GPUs the tenant ran
  int64_t committed = 0;  // GPUs its active contracts commit
  int64_t OverageGpus() const {
    return running > committed ? running - committed : 0;
  }
  int64_t CoveredGpus() const {
    return running < committed ? running : committed;
  }
};

// Sweep-line over the tenant's reserved job attempts on one GPU model: at
// each instant up to `committed` running GPUs are covered, the rest is
// overage. Segments are cut at every attempt and contract boundary and at
// `extra_breaks` (price changes, so each segment has one rate). Only
// segments with running > 0 are returned, in time order.
std::vector<SweepSegment> SweepReserved(absl::Span<const GpuInterval> usage,
                                        absl::Span<const GpuInterval> commits,
                                        absl::Span<const int64_t> extra_breaks);

// Which attempt's GPU-seconds a commitment covers: at each instant the
// running attempts take the committed GPUs in the order given (the caller
// orders them by start time, then id: the earliest started is covered
// first); the rest of their GPUs is overage. Per usage index: covered and
// overage GPU-seconds. Sum of overage == sum of SweepReserved's overage.
struct AttributedUsage {
  int64_t covered_gpu_seconds = 0;
  int64_t overage_gpu_seconds = 0;
};
std::vector<AttributedUsage> AttributeReserved(
    absl::Span<const GpuInterval> usage, absl::Span<const GpuInterval> commits);

// A reserved contract's terms, as numbers.
struct ContractTerms {
  uint32_t gpus = 0;
  Interval term;            // [start_date, end_date) at UTC midnight
  int64_t rate_micros = 0;  // per GPU-hour
};

// Contract value = G x hours(term) x r, in micro-dollars (exact: the term is
// whole days). OUT_OF_RANGE on overflow.
absl::StatusOr<int64_t> ContractValueMicros(const ContractTerms& c);

// The take-or-pay of [term ∩ window]: G x seconds x r / 3600, exact.
absl::StatusOr<ExactAmount> CommittedAmount(const ContractTerms& c,
                                            Interval window);

// Backlog (remaining performance obligation) of one contract as of a time,
// in cents. All figures come from one cumulative function C(t) = round half
// even (recognised(t)), recognised(t) = G x hours(start..min(t, end)) x r
// (0 before start), so that the identities hold exactly:
//   value = C(end), recognized = C(as_of), backlog = value - recognized,
//   next_12_months = C(horizon) - C(as_of), after = C(end) - C(horizon).
struct BacklogFigures {
  int64_t value_cents = 0;
  int64_t recognized_cents = 0;
  int64_t backlog_cents = 0;
  int64_t next_12_months_cents = 0;
  int64_t after_12_months_cents = 0;
};
absl::StatusOr<BacklogFigures> ComputeBacklog(const ContractTerms& c,
                                              int64_t as_of, int64_t horizon);

}  // namespace joule::billing
