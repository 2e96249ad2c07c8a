// Tests of the pure rating arithmetic: periods, interval splitting, tiers,
// the reserved sweep and backlog math.
#include "billing/rating.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "billing/period.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::billing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

int64_t S(const char* rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << err;
  return absl::ToUnixSeconds(t);
}

TEST(PeriodTest, ParseAndBounds) {
  absl::StatusOr<Period> p = Period::Parse("2026-11");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ToString(), "2026-11");
  EXPECT_EQ(p->StartUnixSeconds(), S("2026-11-01T00:00:00Z"));
  EXPECT_EQ(p->EndUnixSeconds(), S("2026-12-01T00:00:00Z"));
  EXPECT_EQ(Period::Parse("2026-12")->Next().ToString(), "2027-01");
  EXPECT_EQ(Period::OfUnixSeconds(S("2026-02-28T23:59:59Z")).ToString(),
            "2026-02");
  for (const char* bad :
       {"2026-13", "2026-00", "2026-1", "26-01", "2026/01", "2026-01-01", ""}) {
    absl::StatusOr<Period> b = Period::Parse(bad, "period");
    EXPECT_FALSE(b.ok()) << bad;
    EXPECT_THAT(b.status().message(), HasSubstr("period"));
  }
}

TEST(PeriodTest, ParseDate) {
  EXPECT_EQ(absl::ToUnixSeconds(*ParseDate("2026-01-16", "d")),
            S("2026-01-16T00:00:00Z"));
  for (const char* bad :
       {"2026-02-30", "2026-13-01", "2026-1-01", "20260101", "2026-01-01Z"}) {
    EXPECT_FALSE(ParseDate(bad, "contract.start_date").ok()) << bad;
  }
}

TEST(SplitTest, ByMonthAndAtBreaks) {
  // 23:30 Jan 31 -> 00:30 Feb 1: 1800 s in each month.
  std::vector<MonthPiece> m =
      SplitByMonth({S("2026-01-31T23:30:00Z"), S("2026-02-01T00:30:00Z")});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].period.ToString(), "2026-01");
  EXPECT_EQ(m[0].interval.seconds(), 1800);
  EXPECT_EQ(m[1].period.ToString(), "2026-02");
  EXPECT_EQ(m[1].interval.seconds(), 1800);
  // Breaks outside or on the ends do not split; duplicates are ignored.
  EXPECT_THAT(SplitAt({100, 200}, {50, 100, 150, 150, 200, 300}),
              ElementsAre(Interval{100, 150}, Interval{150, 200}));
  EXPECT_TRUE(SplitAt({100, 100}, {}).empty());
}

// ------------------------------------------------------------- tiers ----

struct TierCase {
  std::string name;
  uint64_t prior;
  uint64_t tokens;
  std::vector<TierSlice> want;
};
class TierTest : public ::testing::TestWithParam<TierCase> {};

// Output: first 1,000,000,000 tokens of the month at $0.80/1M, the rest at
// $0.60/1M.
const std::vector<Tier> kOutputTiers = {{0, 800'000}, {1'000'000'000, 600'000}};

TEST_P(TierTest, SplitsAtBoundaries) {
  absl::StatusOr<std::vector<TierSlice>> got =
      ApplyTiers(kOutputTiers, GetParam().prior, GetParam().tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TierTest,
    ::testing::Values(
        // [0, 1e9) fills tier 1 exactly; nothing in tier 2.
        TierCase{"HitsBoundaryExactly", 0, 1'000'000'000, {{0, 1'000'000'000}}},
        // [1e9, 1e9+5): starts exactly on the boundary -> tier 2 only.
        TierCase{"StartsOnBoundary", 1'000'000'000, 5, {{1, 5}}},
        // [999,999,000, 1,000,001,000): 1000 in tier 1, 1000 in tier 2.
        TierCase{
            "CrossesInsideOneEvent", 999'999'000, 2000, {{0, 1000}, {1, 1000}}},
        TierCase{"Nothing", 7, 0, {}}),
    [](const auto& info) { return info.param.name; });

TEST(TierErrorTest, OverflowAndValidation) {
  EXPECT_EQ(ApplyTiers(kOutputTiers, UINT64_MAX, 1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(ValidateTiers(kOutputTiers, "t").ok());
  absl::Status s = ValidateTiers({{5, 1}}, "price.inference.output");
  EXPECT_THAT(s.message(), HasSubstr("price.inference.output[0].from_tokens"));
  s = ValidateTiers({{0, 1}, {10, 1}, {10, 2}}, "price.inference.output");
  EXPECT_THAT(s.message(), HasSubstr("price.inference.output[2].from_tokens"));
}

// ------------------------------------------------------------- sweep ----

struct SweepCase {
  std::string name;
  std::vector<GpuInterval> usage;
  std::vector<GpuInterval> commits;
  int64_t overage_gpu_seconds;
  int64_t covered_gpu_seconds;
};
class SweepTest : public ::testing::TestWithParam<SweepCase> {};

TEST_P(SweepTest, CoversUpToCommitment) {
  int64_t over = 0, covered = 0;
  for (const SweepSegment& s :
       SweepReserved(GetParam().usage, GetParam().commits, {})) {
    over += s.OverageGpus() * s.interval.seconds();
    covered += s.CoveredGpus() * s.interval.seconds();
  }
  EXPECT_EQ(over, GetParam().overage_gpu_seconds);
  EXPECT_EQ(covered, GetParam().covered_gpu_seconds);
}

constexpr int64_t kH = 3600;
INSTANTIATE_TEST_SUITE_P(
    Cases, SweepTest,
    ::testing::Values(
        // G = 8, one job of 10 GPUs for an hour: 2 x 3600 = 7200 GPU-s over.
        SweepCase{"GPlus2ForAnHour",
                  {{{0, kH}, 10}},
                  {{{-kH, 10 * kH}, 8}},
                  7200,
                  8 * kH},
        // 6 GPUs [0, 1h) + 4 GPUs [30m, 90m): 10 running for 30 min ->
        // 2 x 1800 = 3600 GPU-s over.
        SweepCase{"OverlapOnlyHalfAnHour",
                  {{{0, kH}, 6}, {{kH / 2, 3 * kH / 2}, 4}},
                  {{{0, 10 * kH}, 8}},
                  3600,
                  6 * kH + 4 * kH - 3600},
        // Commitment ends half-way: the second half is all overage.
        SweepCase{"ContractEndsMidJob",
                  {{{0, kH}, 4}},
                  {{{0, kH / 2}, 8}},
                  4 * 1800,
                  4 * 1800},
        // Within the commitment: nothing over.
        SweepCase{
            "WithinCommitment", {{{0, kH}, 8}}, {{{0, kH}, 8}}, 0, 8 * kH}),
    [](const auto& info) { return info.param.name; });

// ----------------------------------------------------------- backlog ----

struct BacklogCase {
  std::string name;
  const char* as_of;
  BacklogFigures want;
};
class BacklogMathTest : public ::testing::TestWithParam<BacklogCase> {};

TEST_P(BacklogMathTest, ValueRecognizedBacklog) {
  // 8 GPUs, 2026-01-01..2026-04-01 (90 days = 2160 h), $2.00/GPU-h:
  // value = 8 x 2160 x $2.00 = $34,560.00.
  ContractTerms c{
      8, {S("2026-01-01T00:00:00Z"), S("2026-04-01T00:00:00Z")}, 2'000'000};
  int64_t as_of = S(GetParam().as_of);
  int64_t horizon =
      absl::ToUnixSeconds(AddMonths(absl::FromUnixSeconds(as_of), 12));
  absl::StatusOr<BacklogFigures> f = ComputeBacklog(c, as_of, horizon);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->value_cents, GetParam().want.value_cents);
  EXPECT_EQ(f->recognized_cents, GetParam().want.recognized_cents);
  EXPECT_EQ(f->backlog_cents, GetParam().want.backlog_cents);
  EXPECT_EQ(f->next_12_months_cents, GetParam().want.next_12_months_cents);
  EXPECT_EQ(f->after_12_months_cents, GetParam().want.after_12_months_cents);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BacklogMathTest,
    ::testing::Values(
        // Before the term: nothing recognised.
        BacklogCase{"BeforeStart",
                    "2025-12-01T00:00:00Z",
                    {3'456'000, 0, 3'456'000, 3'456'000, 0}},
        // At the start: backlog = value, all within 12 months.
        BacklogCase{"AtStart",
                    "2026-01-01T00:00:00Z",
                    {3'456'000, 0, 3'456'000, 3'456'000, 0}},
        // 2026-02-15: 45 days = 1080 h x 8 x $2.00 = $17,280.00 recognised.
        BacklogCase{"Middle",
                    "2026-02-15T00:00:00Z",
                    {3'456'000, 1'728'000, 1'728'000, 1'728'000, 0}},
        // One second in: 8 GPU-s x $2.00/3600 = $0.004444 -> $0.00.
        BacklogCase{"OneSecondIn",
                    "2026-01-01T00:00:01Z",
                    {3'456'000, 0, 3'456'000, 3'456'000, 0}},
        // At and after the end: all recognised, backlog 0 (clamped).
        BacklogCase{
            "AtEnd", "2026-04-01T00:00:00Z", {3'456'000, 3'456'000, 0, 0, 0}},
        BacklogCase{"AfterEnd",
                    "2027-01-01T00:00:00Z",
                    {3'456'000, 3'456'000, 0, 0, 0}}),
    [](const auto& info) { return info.param.name; });

TEST(BacklogMathTest, SplitsAtTwelveMonths) {
  // 1 GPU, 2026-01-01..2028-01-01 (730 days = 17,520 h) at $1.00/GPU-h:
  // value $17,520.00; as of the start, next 12 months = 365 days = 8,760 h =
  // $8,760.00, after = $8,760.00.
  ContractTerms c{
      1, {S("2026-01-01T00:00:00Z"), S("2028-01-01T00:00:00Z")}, 1'000'000};
  int64_t as_of = S("2026-01-01T00:00:00Z");
  absl::StatusOr<BacklogFigures> f =
      ComputeBacklog(c, as_of, S("2027-01-01T00:00:00Z"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->value_cents, 1'752'000);
  EXPECT_EQ(f->next_12_months_cents, 876'000);
  EXPECT_EQ(f->after_12_months_cents, 876'000);
  EXPECT_EQ(absl::ToUnixSeconds(AddMonths(absl::FromUnixSeconds(as_of), 12)),
            S("2027-01-01T00:00:00Z"));
}

TEST(ContractMathTest, ValueAndOverflow) {
  // 8 x 2160 h x $2.00 = $34,560 = 34,560,000,000 micro-dollars.
  ContractTerms c{
      8, {S("2026-01-01T00:00:00Z"), S("2026-04-01T00:00:00Z")}, 2'000'000};
  EXPECT_EQ(*ContractValueMicros(c), 34'560'000'000);
  // 4e9 GPUs x 2160 h x $9e12: overflows int64 micro-dollars.
  ContractTerms huge{4'000'000'000u, c.term, 9'000'000'000'000'000'000};
  EXPECT_EQ(ContractValueMicros(huge).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace joule::billing
