// Tests of the billing ledger over MemoryStore / RocksDbStore with a fake
// clock. Every expected amount has its arithmetic in a comment.
#include "billing/ledger.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "tests/billing/ledger_test_util.h"

namespace joule::billing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// =========================================================== GPU lines ===

struct GpuJob {
  v1::ServiceClass cls;
  uint32_t gpus;
  const char* start;
  const char* end;
};
struct GpuExpect {
  const char* period;
  const char* pricing_model;
  const char* unit_price;
  const char* quantity;  // GPU-hours
  int64_t cents;
};
struct GpuCase {
  std::string name;
  std::vector<GpuJob> jobs;
  std::vector<GpuExpect> lines;
  std::vector<std::pair<const char*, int64_t>> totals;  // period -> cents
};
class GpuLineTest : public LedgerTest,
                    public ::testing::WithParamInterface<GpuCase> {};

TEST_P(GpuLineTest, RatesGpuSeconds) {
  // H100 on-demand $2.49 until 2026-01-15 12:00, then $3.00; spot $0.01.
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.49",
                    T("2025-01-01T00:00:00Z")));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "3.00",
                    T("2026-01-15T12:00:00Z")));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_SPOT, "0.01",
                    T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-03-01T00:00:00Z"));
  int n = 0;
  for (const GpuJob& j : GetParam().jobs) {
    ASSERT_TRUE(ledger_
                    .RecordJobUsage(Job(absl::StrCat("j", n++), j.cls, j.gpus,
                                        T(j.start), T(j.end)))
                    .ok());
  }
  for (const GpuExpect& e : GetParam().lines) {
    v1::Statement st = Statement(e.period);
    const v1::StatementLine* l =
        FindLine(st, e.pricing_model, "", "", e.unit_price);
    ASSERT_NE(l, nullptr) << e.period << " " << e.pricing_model << " "
                          << e.unit_price << "\n"
                          << st.DebugString();
    EXPECT_EQ(l->quantity(), e.quantity);
    EXPECT_EQ(l->unit(), "GPU-hour");
    EXPECT_EQ(l->amount_cents(), e.cents) << st.DebugString();
  }
  for (const auto& [period, cents] : GetParam().totals) {
    v1::Statement st = Statement(period);
    EXPECT_EQ(st.total_cents(), cents) << st.DebugString();
    EXPECT_EQ(st.total_cents(), SumLines(st));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GpuLineTest,
    ::testing::Values(
        // 2 GPUs x 5400 s = 10800 GPU-s = 3 GPU-h x $2.49 = $7.47
        GpuCase{"Simple",
                {{v1::SERVICE_CLASS_ON_DEMAND, 2, "2026-01-10T10:00:00Z",
                  "2026-01-10T11:30:00Z"}},
                {{"2026-01", "on-demand", "2.49", "3", 747}},
                {{"2026-01", 747}}},
        // 4 GPUs from Jan 31 23:30 to Feb 1 00:30 at $3.00:
        // Jan: 4 x 1800 s = 7200 GPU-s = 2 GPU-h x $3.00 = $6.00
        // Feb: 4 x 1800 s = 2 GPU-h x $3.00 = $6.00
        GpuCase{"AcrossMonthBoundary",
                {{v1::SERVICE_CLASS_ON_DEMAND, 4, "2026-01-31T23:30:00Z",
                  "2026-02-01T00:30:00Z"}},
                {{"2026-01", "on-demand", "3.00", "2", 600},
                 {"2026-02", "on-demand", "3.00", "2", 600}},
                {{"2026-01", 600}, {"2026-02", 600}}},
        // 1 GPU from Jan 15 11:00 to 13:00, price change at 12:00:
        // 3600 GPU-s x $2.49/h = $2.49 + 3600 GPU-s x $3.00/h = $3.00
        // = $5.49 on two lines.
        GpuCase{"AcrossPriceChange",
                {{v1::SERVICE_CLASS_ON_DEMAND, 1, "2026-01-15T11:00:00Z",
                  "2026-01-15T13:00:00Z"}},
                {{"2026-01", "on-demand", "2.49", "1", 249},
                 {"2026-01", "on-demand", "3.00", "1", 300}},
                {{"2026-01", 549}}},
        // Spot $0.01/GPU-h, 1 GPU x 1800 s = 0.5 GPU-h = $0.005 exactly:
        // half a cent rounds half-even to $0.00.
        GpuCase{"HalfCentRoundsToEvenDown",
                {{v1::SERVICE_CLASS_SPOT, 1, "2026-01-10T00:00:00Z",
                  "2026-01-10T00:30:00Z"}},
                {{"2026-01", "spot", "0.01", "0.5", 0}},
                {{"2026-01", 0}}},
        // 1 GPU x 5400 s = 1.5 GPU-h x $0.01 = $0.015 -> $0.02 (to even).
        GpuCase{"HalfCentRoundsToEvenUp",
                {{v1::SERVICE_CLASS_SPOT, 1, "2026-01-10T00:00:00Z",
                  "2026-01-10T01:30:00Z"}},
                {{"2026-01", "spot", "0.01", "1.5", 2}},
                {{"2026-01", 2}}},
        // Two jobs in one line: 1800 + 1800 GPU-s = 1 GPU-h x $0.01 = $0.01:
        // the line is rounded once on its exact sum (not 0 + 0).
        GpuCase{"LineRoundedOnceOnExactSum",
                {{v1::SERVICE_CLASS_SPOT, 1, "2026-01-10T00:00:00Z",
                  "2026-01-10T00:30:00Z"},
                 {v1::SERVICE_CLASS_SPOT, 1, "2026-01-11T00:00:00Z",
                  "2026-01-11T00:30:00Z"}},
                {{"2026-01", "spot", "0.01", "1", 1}},
                {{"2026-01", 1}}}),
    [](const auto& info) { return info.param.name; });

TEST_F(LedgerTest, EachLineRoundedThenSummed) {
  // Two lines of exactly half a cent each: on-demand at $0.01/GPU-h and spot
  // at $0.01/GPU-h, each 1 GPU x 1800 s = $0.005 -> $0.00 per line; total =
  // sum of rounded lines = $0.00 (not round($0.01) = $0.01).
  SetPrice(GpuPrice("A10", v1::SERVICE_CLASS_ON_DEMAND, "0.01",
                    T("2025-01-01T00:00:00Z")));
  SetPrice(GpuPrice("A10", v1::SERVICE_CLASS_SPOT, "0.01",
                    T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-02-01T00:00:00Z"));
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("a", v1::SERVICE_CLASS_ON_DEMAND, 1,
                                      T("2026-01-05T00:00:00Z"),
                                      T("2026-01-05T00:30:00Z"), 1, "A10"))
                  .ok());
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("b", v1::SERVICE_CLASS_SPOT, 1,
                                      T("2026-01-05T00:00:00Z"),
                                      T("2026-01-05T00:30:00Z"), 1, "A10"))
                  .ok());
  v1::Statement st = Statement("2026-01");
  EXPECT_EQ(st.lines_size(), 2) << st.DebugString();
  EXPECT_EQ(st.total_cents(), 0);
  EXPECT_EQ(st.subtotal_cents().at("on-demand"), 0);
  EXPECT_EQ(st.subtotal_cents().at("spot"), 0);
}

TEST_F(LedgerTest, EnergyLineIsInformational) {
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-02-01T00:00:00Z"));
  // 7,200,000,000 mJ = 2 kWh.
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("e", v1::SERVICE_CLASS_ON_DEMAND, 1,
                                      T("2026-01-05T00:00:00Z"),
                                      T("2026-01-05T01:00:00Z"), 1, "H100",
                                      7'200'000'000))
                  .ok());
  v1::Statement st = Statement("2026-01");
  const v1::StatementLine* e = FindLine(st, "energy", "");
  ASSERT_NE(e, nullptr) << st.DebugString();
  EXPECT_TRUE(e->informational());
  EXPECT_EQ(e->unit(), "kWh");
  EXPECT_EQ(e->quantity(), "2");
  EXPECT_EQ(e->item(), "H100");
  // 1 GPU-h x $2.00 = $2.00; the energy line adds nothing.
  EXPECT_EQ(st.total_cents(), 200);
}

// ========================================================== inference ===

struct InfEvent {
  int64_t requests;
  int64_t in;
  int64_t out;
};
struct InfLine {
  const char* detail;
  const char* quantity;
  int64_t cents;
};
struct InfCase {
  std::string name;
  std::vector<InfEvent> events;
  std::vector<InfLine> lines;
  int64_t total;
};
class InferenceTest : public LedgerTest,
                      public ::testing::WithParamInterface<InfCase> {};

TEST_P(InferenceTest, TiersAndRounding) {
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  std::vector<v1::UsageEvent> events;
  int n = 0;
  for (const InfEvent& e : GetParam().events) {
    // One batch per event: tier position carries across batches.
    v1::UsageEvent ev = Ev(absl::StrCat("k", n++), T("2025-12-31T10:00:00Z"),
                           e.requests, e.in, e.out);
    ASSERT_TRUE(ledger_.RecordUsage({ev}, "operator").ok());
  }
  v1::Statement st = Statement("2025-12");
  for (const InfLine& want : GetParam().lines) {
    const v1::StatementLine* l = FindLine(st, "inference", want.detail);
    ASSERT_NE(l, nullptr) << want.detail << "\n" << st.DebugString();
    EXPECT_EQ(l->quantity(), want.quantity) << want.detail;
    EXPECT_EQ(l->amount_cents(), want.cents) << want.detail;
  }
  EXPECT_EQ(st.lines_size(), static_cast<int>(GetParam().lines.size()))
      << st.DebugString();
  EXPECT_EQ(st.total_cents(), GetParam().total);
  EXPECT_EQ(st.subtotal_cents().at("inference"), GetParam().total);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InferenceTest,
    ::testing::Values(
        // 1,000,000,000 output tokens hit the tier boundary exactly:
        // 1000 M x $0.80 = $800.00 in tier 1; then 2,000,000 start exactly
        // on it: 2 M x $0.60 = $1.20 in tier 2. Total $801.20.
        InfCase{
            "BoundaryHitExactly",
            {{0, 0, 1'000'000'000}, {0, 0, 2'000'000}},
            {{"output, tier 1", "1000", 80'000}, {"output, tier 2", "2", 120}},
            80'120},
        // 999,000,000 then 3,000,000 output tokens: the second event crosses
        // the boundary: 1,000,000 more in tier 1 (1000 M x $0.80 = $800.00)
        // and 2,000,000 in tier 2 (2 M x $0.60 = $1.20). Total $801.20.
        InfCase{
            "CrossedInsideOneEvent",
            {{0, 0, 999'000'000}, {0, 0, 3'000'000}},
            {{"output, tier 1", "1000", 80'000}, {"output, tier 2", "2", 120}},
            80'120},
        // Input 10,000 tokens = 0.01 M x $0.50 = $0.005 -> $0.00 (half-even)
        InfCase{
            "InputHalfCentDown", {{0, 10'000, 0}}, {{"input", "0.01", 0}}, 0},
        // Input 30,000 tokens = 0.03 M x $0.50 = $0.015 -> $0.02 (half-even)
        InfCase{"InputHalfCentUp", {{0, 30'000, 0}}, {{"input", "0.03", 2}}, 2},
        // 1000 requests x $0.0001 = $0.10; 125 requests x $0.0001 = $0.0125
        // -> line of 1125 requests = $0.1125 -> $0.11.
        InfCase{"PerRequest",
                {{1000, 0, 0}, {125, 0, 0}},
                {{"requests", "1125", 11}},
                11}),
    [](const auto& info) { return info.param.name; });

// ==================================================== reserved contracts ===

v1::Contract MakeContract(uint32_t gpus, const std::string& start,
                          const std::string& end, const std::string& rate,
                          const std::string& overage = "",
                          const std::string& tenant = "acme") {
  v1::Contract c;
  c.set_tenant(tenant);
  c.set_gpu_model("H100");
  c.set_gpus(gpus);
  c.set_start_date(start);
  c.set_end_date(end);
  c.set_rate(rate);
  c.set_overage_rate(overage);
  return c;
}

TEST_F(LedgerTest, ContractStartingMidMonthChargesPartialPeriod) {
  // 8 GPUs, 2026-01-16..2026-04-16 at $2.00/GPU-h.
  absl::StatusOr<v1::Contract> c = ledger_.CreateContract(
      MakeContract(8, "2026-01-16", "2026-04-16", "2.00"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->id(), "C-000001");
  // value = 8 GPUs x 90 days x 24 h = 17,280 GPU-h x $2.00 = $34,560.00
  EXPECT_EQ(c->value_micros(), 34'560'000'000);
  // January: 16 days (16th..31st) = 384 h x 8 = 3072 GPU-h x $2.00
  // = $6,144.00
  v1::Statement jan = Statement("2026-01");
  const v1::StatementLine* l = FindLine(jan, "reserved", "C-000001");
  ASSERT_NE(l, nullptr) << jan.DebugString();
  EXPECT_EQ(l->quantity(), "3072");
  EXPECT_EQ(l->unit_price(), "2.00");
  EXPECT_EQ(l->amount_cents(), 614'400);
  EXPECT_EQ(jan.subtotal_cents().at("reserved"), 614'400);
  // February: 28 days = 672 h x 8 = 5376 GPU-h x $2.00 = $10,752.00
  EXPECT_EQ(Statement("2026-02").total_cents(), 1'075'200);
  // April: 15 days = 360 h x 8 = 2880 GPU-h x $2.00 = $5,760.00
  EXPECT_EQ(Statement("2026-04").total_cents(), 576'000);
  // Take-or-pay over the term adds up to the value:
  // 6,144 + 10,752 + 31 x 24 x 8 x 2 (11,904) + 5,760 = $34,560.
  EXPECT_EQ(Statement("2026-03").total_cents(), 1'190'400);
  // ContractedGpus: active on [start, end).
  EXPECT_EQ(ledger_.ContractedGpus(T("2026-01-16T00:00:00Z"))["acme"]["H100"],
            8u);
  EXPECT_TRUE(ledger_.ContractedGpus(T("2026-01-15T23:59:59Z")).empty());
  EXPECT_TRUE(ledger_.ContractedGpus(T("2026-04-16T00:00:00Z")).empty());
}

struct OverageCase {
  std::string name;
  std::string overage_rate;  // "" = on-demand price
  std::vector<GpuJob> jobs;  // reserved
  const char* unit_price;
  const char* quantity;
  int64_t cents;
};
class ReservedOverageTest : public LedgerTest,
                            public ::testing::WithParamInterface<OverageCase> {
};

TEST_P(ReservedOverageTest, BeyondCommitmentAtOverageRate) {
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.49",
                    T("2025-01-01T00:00:00Z")));
  // G = 8 for all of January at $2.00: take-or-pay 8 x 744 h x $2.00 =
  // $11,904.00.
  ASSERT_TRUE(ledger_
                  .CreateContract(MakeContract(8, "2026-01-01", "2026-02-01",
                                               "2.00", GetParam().overage_rate))
                  .ok());
  clock_.Set(T("2026-02-01T00:00:00Z"));
  int n = 0;
  for (const GpuJob& j : GetParam().jobs) {
    ASSERT_TRUE(ledger_
                    .RecordJobUsage(Job(absl::StrCat("r", n++), j.cls, j.gpus,
                                        T(j.start), T(j.end)))
                    .ok());
  }
  v1::Statement st = Statement("2026-01");
  const v1::StatementLine* l = FindLine(st, "reserved-overage", "");
  ASSERT_NE(l, nullptr) << st.DebugString();
  EXPECT_EQ(l->unit_price(), GetParam().unit_price);
  EXPECT_EQ(l->quantity(), GetParam().quantity);
  EXPECT_EQ(l->amount_cents(), GetParam().cents);
  EXPECT_EQ(st.subtotal_cents().at("reserved"), 1'190'400);
  EXPECT_EQ(st.total_cents(), 1'190'400 + GetParam().cents);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ReservedOverageTest,
    ::testing::Values(
        // 10 GPUs (G+2) for an hour: 2 x 3600 = 7200 GPU-s = 2 GPU-h over
        // x $3.00 = $6.00.
        OverageCase{"GPlus2ForAnHour",
                    "3.00",
                    {{v1::SERVICE_CLASS_RESERVED, 10, "2026-01-10T00:00:00Z",
                      "2026-01-10T01:00:00Z"}},
                    "3.00",
                    "2",
                    600},
        // Same without an overage rate: the on-demand price, 2 GPU-h x $2.49
        // = $4.98.
        OverageCase{"DefaultsToOnDemand",
                    "",
                    {{v1::SERVICE_CLASS_RESERVED, 10, "2026-01-10T00:00:00Z",
                      "2026-01-10T01:00:00Z"}},
                    "2.49",
                    "2",
                    498},
        // 6 GPUs 00:00-01:00 and 4 GPUs 00:30-01:30: 10 running for 30 min
        // -> 2 x 1800 = 3600 GPU-s = 1 GPU-h x $3.00 = $3.00.
        OverageCase{"TwoJobsOverlapHalfAnHour",
                    "3.00",
                    {{v1::SERVICE_CLASS_RESERVED, 6, "2026-01-10T00:00:00Z",
                      "2026-01-10T01:00:00Z"},
                     {v1::SERVICE_CLASS_RESERVED, 4, "2026-01-10T00:30:00Z",
                      "2026-01-10T01:30:00Z"}},
                    "3.00",
                    "1",
                    300}),
    [](const auto& info) { return info.param.name; });

TEST_F(LedgerTest, ReservedWithinCommitmentHasNoOverage) {
  ASSERT_TRUE(ledger_
                  .CreateContract(
                      MakeContract(8, "2026-01-01", "2026-02-01", "2.00", "3"))
                  .ok());
  clock_.Set(T("2026-02-01T00:00:00Z"));
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("r", v1::SERVICE_CLASS_RESERVED, 8,
                                      T("2026-01-10T00:00:00Z"),
                                      T("2026-01-10T05:00:00Z")))
                  .ok());
  v1::Statement st = Statement("2026-01");
  EXPECT_EQ(FindLine(st, "reserved-overage", ""), nullptr) << st.DebugString();
  EXPECT_EQ(st.total_cents(), 1'190'400);  // 8 x 744 h x $2.00
}

struct BacklogCase {
  std::string name;
  const char* as_of;
  int64_t recognized;
  int64_t backlog;
};
class LedgerBacklogTest : public LedgerTest,
                          public ::testing::WithParamInterface<BacklogCase> {};

TEST_P(LedgerBacklogTest, StartMiddleEnd) {
  // 8 GPUs 2026-01-01..2026-04-01 (2160 h) at $2.00: value $34,560.00.
  // 1 GPU 2026-01-01..2028-01-01 (17,520 h) at $1.00: value $17,520.00.
  ASSERT_TRUE(
      ledger_
          .CreateContract(MakeContract(8, "2026-01-01", "2026-04-01", "2.00"))
          .ok());
  ASSERT_TRUE(ledger_
                  .CreateContract(MakeContract(1, "2026-01-01", "2028-01-01",
                                               "1.00", "", "globex"))
                  .ok());
  absl::StatusOr<v1::GetBacklogResponse> b =
      ledger_.Backlog(T(GetParam().as_of));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rows_size(), 2);
  const v1::BacklogRow& r = b->rows(0);
  EXPECT_EQ(r.contract_id(), "C-000001");
  EXPECT_EQ(r.tenant(), "acme");
  EXPECT_EQ(r.gpus(), 8u);
  EXPECT_EQ(r.rate(), "2.00");
  EXPECT_EQ(r.value_cents(), 3'456'000);
  EXPECT_EQ(r.recognized_cents(), GetParam().recognized);
  EXPECT_EQ(r.backlog_cents(), GetParam().backlog);
  EXPECT_EQ(r.next_12_months_cents(), GetParam().backlog);  // ends < 12 mo
  EXPECT_EQ(r.after_12_months_cents(), 0);
  const v1::BacklogRow& t = b->total();
  EXPECT_EQ(t.value_cents(), 3'456'000 + 1'752'000);
  EXPECT_EQ(t.backlog_cents(), r.backlog_cents() + b->rows(1).backlog_cents());
  EXPECT_EQ(t.next_12_months_cents() + t.after_12_months_cents(),
            t.backlog_cents());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LedgerBacklogTest,
    ::testing::Values(
        // At the start: nothing recognised, backlog = value $34,560.00.
        BacklogCase{"Start", "2026-01-01T00:00:00Z", 0, 3'456'000},
        // 2026-02-15: 45 days = 1080 h x 8 x $2.00 = $17,280.00 recognised,
        // backlog $17,280.00.
        BacklogCase{"Middle", "2026-02-15T00:00:00Z", 1'728'000, 1'728'000},
        // At the end: all recognised, backlog 0.
        BacklogCase{"End", "2026-04-01T00:00:00Z", 3'456'000, 0}),
    [](const auto& info) { return info.param.name; });

TEST_F(LedgerTest, BacklogSplitsNextTwelveMonths) {
  ASSERT_TRUE(ledger_
                  .CreateContract(MakeContract(1, "2026-01-01", "2028-01-01",
                                               "1.00", "", "globex"))
                  .ok());
  // As of 2026-07-01: recognised 181 days x 24 = 4344 h x $1 = $4,344.00;
  // next 12 months (to 2027-07-01) = 365 days = 8760 h = $8,760.00;
  // after = 17,520 - 4,344 - 8,760 = $4,416.00.
  absl::StatusOr<v1::GetBacklogResponse> b =
      ledger_.Backlog(T("2026-07-01T00:00:00Z"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->rows(0).recognized_cents(), 434'400);
  EXPECT_EQ(b->rows(0).next_12_months_cents(), 876'000);
  EXPECT_EQ(b->rows(0).after_12_months_cents(), 441'600);
  EXPECT_EQ(b->total().after_12_months_cents(), 441'600);
}

TEST_F(LedgerTest, ContractValidation) {
  struct Bad {
    v1::Contract c;
    std::string field;
  };
  std::vector<Bad> cases = {
      {MakeContract(8, "2026-01-01", "2026-04-01", "2.00", "", "nobody"),
       "contract.tenant"},
      {MakeContract(0, "2026-01-01", "2026-04-01", "2.00"), "contract.gpus"},
      {MakeContract(8, "2026-1-01", "2026-04-01", "2.00"),
       "contract.start_date"},
      {MakeContract(8, "2026-04-01", "2026-04-01", "2.00"),
       "contract.end_date"},
      {MakeContract(8, "2026-01-01", "2026-04-01", "2.001234567"),
       "contract.rate"},
      {MakeContract(8, "2026-01-01", "2026-04-01", "-2"), "contract.rate"},
      {MakeContract(8, "2026-01-01", "2026-04-01", "2", "x"),
       "contract.overage_rate"},
      // Above the largest rate, $1,000,000 per GPU-hour.
      {MakeContract(8, "2026-01-01", "2026-04-01", "1000000.01"),
       "contract.rate"},
      // 4e9 GPUs x 2160 h x $1,000,000 = 8.6e27 micro-dollars: overflows
      // int64 micro-dollars.
      {MakeContract(4'000'000'000u, "2026-01-01", "2026-04-01", "1000000"),
       "overflows"},
  };
  for (const Bad& b : cases) {
    absl::StatusOr<v1::Contract> r = ledger_.CreateContract(b.c);
    ASSERT_FALSE(r.ok()) << b.field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(b.field));
  }
  EXPECT_TRUE(ledger_.ListContracts("").empty());
}

// ============================================================== prices ===

TEST_F(LedgerTest, PriceValidationAndHistory) {
  absl::StatusOr<v1::Price> bad = ledger_.SetPrice(GpuPrice(
      "H100", v1::SERVICE_CLASS_ON_DEMAND, "2.4900001", absl::UnixEpoch()));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("price.gpu_hour.price: \"2.4900001\" has more than 6 "
                        "decimal places"));
  bad = ledger_.SetPrice(
      GpuPrice("H100", v1::SERVICE_CLASS_RESERVED, "2", absl::UnixEpoch()));
  EXPECT_THAT(bad.status().message(),
              HasSubstr("price.gpu_hour.service_class"));
  v1::Price tiers = LlamaPrice(absl::UnixEpoch());
  tiers.mutable_inference()->mutable_output(1)->set_price("0.6.0");
  bad = ledger_.SetPrice(tiers);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("price.inference.output[1].price"));

  absl::StatusOr<v1::Price> v1p = ledger_.SetPrice(GpuPrice(
      "H100", v1::SERVICE_CLASS_ON_DEMAND, "2.49", T("2025-06-01T00:00:00Z")));
  ASSERT_TRUE(v1p.ok());
  EXPECT_EQ(v1p->version(), 1u);
  // A change may not be retroactive.
  bad = ledger_.SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.99",
                                  T("2025-12-01T00:00:00Z")));
  EXPECT_THAT(bad.status().message(), HasSubstr("price.effective_from"));
  absl::StatusOr<v1::Price> v2p = ledger_.SetPrice(GpuPrice(
      "H100", v1::SERVICE_CLASS_ON_DEMAND, "2.99", T("2026-02-01T00:00:00Z")));
  ASSERT_TRUE(v2p.ok());
  EXPECT_EQ(v2p->version(), 2u);
  // Now (Jan 1): v1 in effect, v2 scheduled; both listed.
  EXPECT_EQ(ledger_.ListPrices(false).size(), 2u);
  clock_.Set(T("2026-03-01T00:00:00Z"));
  std::vector<v1::Price> current = ledger_.ListPrices(false);
  ASSERT_EQ(current.size(), 1u);
  EXPECT_EQ(current[0].version(), 2u);
  std::vector<v1::Price> all = ledger_.ListPrices(true);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].gpu_hour().price(), "2.49");
}

// ========================================================= idempotency ===

class IngestTest : public LedgerTest {
 protected:
  void SetUp() override {
    LedgerTest::SetUp();
    SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  }
  std::vector<v1::UsageEvent> Batch(int n, const std::string& prefix = "k") {
    std::vector<v1::UsageEvent> b;
    for (int i = 0; i < n; ++i) {
      // Each: 1 request, 1000 input, 2000 output tokens.
      b.push_back(Ev(absl::StrCat(prefix, i), T("2025-12-31T12:00:00Z"), 1,
                     1000, 2000));
    }
    return b;
  }
};

TEST_F(IngestTest, SameBatchTwiceCountsOnce) {
  std::vector<v1::UsageEvent> b = Batch(1000);
  absl::StatusOr<v1::RecordUsageResponse> r1 =
      ledger_.RecordUsage(b, "operator");
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->accepted(), 1000u);
  EXPECT_EQ(r1->duplicates(), 0u);
  v1::Statement before = Statement("2025-12");
  absl::StatusOr<v1::RecordUsageResponse> r2 =
      ledger_.RecordUsage(b, "operator");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->accepted(), 0u);
  EXPECT_EQ(r2->duplicates(), 1000u);
  v1::Statement after = Statement("2025-12");
  // 1000 x 2000 output = 2,000,000 = 2 M x $0.80 = $1.60 (counted once).
  EXPECT_EQ(FindLine(after, "inference", "output")->quantity(), "2");
  EXPECT_EQ(after.total_cents(), before.total_cents());
  // input 1 M x $0.50 = $0.50; output $1.60; 1000 requests x $0.0001 = $0.10
  EXPECT_EQ(after.total_cents(), 50 + 160 + 10);
}

TEST_F(IngestTest, DuplicateInsideOneBatch) {
  std::vector<v1::UsageEvent> b = Batch(2);
  b.push_back(b[0]);
  absl::StatusOr<v1::RecordUsageResponse> r =
      ledger_.RecordUsage(b, "operator");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 2u);
  EXPECT_EQ(r->duplicates(), 1u);
  b.push_back(b[1]);
  b.back().set_output_tokens(1);
  EXPECT_EQ(ledger_.RecordUsage(b, "operator").status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(IngestTest, KeyIsScopedPerTenant) {
  v1::UsageEvent a = Ev("same", T("2025-12-31T12:00:00Z"), 1, 1, 1, "acme");
  v1::UsageEvent g = Ev("same", T("2025-12-31T12:00:00Z"), 1, 1, 1, "globex");
  absl::StatusOr<v1::RecordUsageResponse> r =
      ledger_.RecordUsage({a, g}, "operator");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 2u);
}

TEST_F(IngestTest, ConflictingPayloadChangesNothing) {
  ASSERT_TRUE(ledger_.RecordUsage(Batch(10), "operator").ok());
  v1::Statement before = Statement("2025-12");
  int writes = store_.writes;
  // A new key plus an old key with a different payload.
  std::vector<v1::UsageEvent> b = {
      Ev("new", T("2025-12-31T12:00:00Z"), 1, 5, 5),
      Ev("k3", T("2025-12-31T12:00:00Z"), 1, 1000, 2001)};
  absl::StatusOr<v1::RecordUsageResponse> r =
      ledger_.RecordUsage(b, "operator");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(r.status().message(), HasSubstr("events[1].idempotency_key"));
  EXPECT_EQ(store_.writes, writes);
  EXPECT_TRUE(MessageDifferencer::Equals(Statement("2025-12"), before));
  // "new" was not stored: sending it alone is accepted, not a duplicate.
  r = ledger_.RecordUsage({b[0]}, "operator");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 1u);
}

struct InvalidCase {
  std::string name;
  std::function<void(v1::UsageEvent*)> mutate;
  std::string message;
};
class InvalidEventTest : public IngestTest,
                         public ::testing::WithParamInterface<InvalidCase> {};

TEST_P(InvalidEventTest, RejectsWholeBatchNamingIndex) {
  std::vector<v1::UsageEvent> b = Batch(3);
  GetParam().mutate(&b[1]);
  int writes = store_.writes;
  absl::StatusOr<v1::RecordUsageResponse> r =
      ledger_.RecordUsage(b, "operator");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().message));
  EXPECT_EQ(store_.writes, writes);
  // Nothing stored: the valid events 0 and 2 are new afterwards.
  absl::StatusOr<v1::RecordUsageResponse> ok =
      ledger_.RecordUsage({b[0], b[2]}, "operator");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->accepted(), 2u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidEventTest,
    ::testing::Values(
        InvalidCase{"NegativeInput",
                    [](v1::UsageEvent* e) { e->set_input_tokens(-1); },
                    "events[1].input_tokens: must be >= 0"},
        InvalidCase{"NegativeOutput",
                    [](v1::UsageEvent* e) { e->set_output_tokens(-5); },
                    "events[1].output_tokens: must be >= 0"},
        InvalidCase{"NegativeRequests",
                    [](v1::UsageEvent* e) { e->set_requests(-1); },
                    "events[1].requests: must be >= 0"},
        InvalidCase{"EmptyKey",
                    [](v1::UsageEvent* e) { e->set_idempotency_key(""); },
                    "events[1].idempotency_key: must not be empty"},
        InvalidCase{"UnknownTenant",
                    [](v1::UsageEvent* e) { e->set_tenant("nobody"); },
                    "events[1].tenant: unknown tenant"},
        InvalidCase{"UnknownModel",
                    [](v1::UsageEvent* e) { e->set_model("gpt-9"); },
                    "events[1].model: unknown model \"gpt-9\""},
        // Clock is 2026-01-01T00:00:00Z; 5 min + 1 s ahead is too far.
        InvalidCase{"TooFarInFuture",
                    [](v1::UsageEvent* e) {
                      *e->mutable_time() = Ts(T("2026-01-01T00:05:01Z"));
                    },
                    "events[1].time: more than 5 minutes in the future"},
        InvalidCase{"NoTime", [](v1::UsageEvent* e) { e->clear_time(); },
                    "events[1].time: required"}),
    [](const auto& info) { return info.param.name; });

TEST_F(IngestTest, FiveMinutesAheadIsAccepted) {
  // Exactly now + 5 min is allowed (the rule is "> 5 minutes").
  absl::StatusOr<v1::RecordUsageResponse> r = ledger_.RecordUsage(
      {Ev("f", T("2026-01-01T00:05:00Z"), 1, 1, 1)}, "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 1u);
}

TEST_F(IngestTest, ConcurrentIdenticalBatchesCountOnce) {
  std::vector<v1::UsageEvent> b = Batch(2000);
  std::atomic<uint32_t> accepted{0}, dups{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      absl::StatusOr<v1::RecordUsageResponse> r =
          ledger_.RecordUsage(b, "operator");
      ASSERT_TRUE(r.ok());
      accepted += r->accepted();
      dups += r->duplicates();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load(), 2000u);
  EXPECT_EQ(dups.load(), 3u * 2000u);
  // 2000 x 2000 output = 4 M x $0.80 = $3.20.
  EXPECT_EQ(
      FindLine(Statement("2025-12"), "inference", "output")->amount_cents(),
      320);
}

TEST_F(IngestTest, StatementReadsAggregatesNotEvents) {
  // 100 batches x 2000 events; the statement must not touch the store and
  // stay well under 100 ms.
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(
        ledger_.RecordUsage(Batch(2000, absl::StrCat("b", i, "-")), "operator")
            .ok());
  }
  double ingest_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::cout << "ingest: " << 200000 / ingest_s << " events/s\n";
  int reads = store_.reads;
  start = std::chrono::steady_clock::now();
  v1::Statement st = Statement("2025-12");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(store_.reads, reads);
  EXPECT_LT(took, std::chrono::milliseconds(100));
  // 200,000 x 2000 = 400 M output x $0.80 = $320.00; 200 M input x $0.50 =
  // $100.00; 200,000 requests x $0.0001 = $20.00.
  EXPECT_EQ(st.total_cents(), 32'000 + 10'000 + 2'000);
}

// =========================================================== finalizing ===

TEST_F(LedgerTest, FinalizeOnlyAfterPeriodEnd) {
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-01-31T23:59:59Z"));
  EXPECT_EQ(ledger_.FinalizePeriod("2026-01").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_.FinalizePeriod("2026-1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LedgerTest, LateUsageBecomesAdjustmentAndFinalizedNeverChanges) {
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-01-20T00:00:00Z"));
  // January: 2,000,000 input tokens = 2 M x $0.50 = $1.00; 1 request $0.0001
  ASSERT_TRUE(ledger_
                  .RecordUsage(
                      {Ev("jan-1", T("2026-01-10T00:00:00Z"), 1, 2'000'000, 0)},
                      "operator")
                  .ok());
  clock_.Set(T("2026-02-01T00:05:00Z"));
  absl::StatusOr<v1::FinalizePeriodResponse> f =
      ledger_.FinalizePeriod("2026-01");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->statements_size(), 1);
  EXPECT_EQ(f->statements(0).number(), "JS-2026-01-000001");
  EXPECT_TRUE(f->statements(0).finalized());
  // $1.00 + $0.0001 -> 100 + 0 cents
  EXPECT_EQ(f->statements(0).total_cents(), 100);
  const v1::Statement frozen = Statement("2026-01");
  EXPECT_TRUE(MessageDifferencer::Equals(frozen, f->statements(0)));

  // A late inference event for January, and a late January job.
  ASSERT_TRUE(ledger_
                  .RecordUsage({Ev("jan-late", T("2026-01-31T23:00:00Z"), 0,
                                   4'000'000, 0)},
                               "operator")
                  .ok());
  // 2 GPUs x 1 h = 2 GPU-h x $2.00 = $4.00
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("late-job", v1::SERVICE_CLASS_ON_DEMAND,
                                      2, T("2026-01-31T22:00:00Z"),
                                      T("2026-01-31T23:00:00Z")))
                  .ok());
  // And a contract covering January is refused.
  EXPECT_EQ(
      ledger_
          .CreateContract(MakeContract(1, "2026-01-15", "2026-03-01", "1.00"))
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);

  EXPECT_TRUE(MessageDifferencer::Equals(Statement("2026-01"), frozen));
  v1::Statement feb = Statement("2026-02");
  // 4 M input x $0.50 = $2.00, booked in February for January.
  const v1::StatementLine* inf = FindLine(feb, "inference", "input", "2026-01");
  ASSERT_NE(inf, nullptr) << feb.DebugString();
  EXPECT_EQ(inf->quantity(), "4");
  EXPECT_EQ(inf->amount_cents(), 200);
  const v1::StatementLine* job = FindLine(feb, "on-demand", "", "2026-01");
  ASSERT_NE(job, nullptr) << feb.DebugString();
  EXPECT_EQ(job->quantity(), "2");
  EXPECT_EQ(job->amount_cents(), 400);
  EXPECT_EQ(feb.total_cents(), 600);
  EXPECT_FALSE(feb.finalized());

  // Finalizing again returns the stored statements, unchanged.
  absl::StatusOr<v1::FinalizePeriodResponse> again =
      ledger_.FinalizePeriod("2026-01");
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->statements_size(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(again->statements(0), frozen));
}

TEST_F(LedgerTest, LateEventContinuesTheMonthsTierCount) {
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-01-20T00:00:00Z"));
  // January: 999,000,000 output = 999 M x $0.80 = $799.20.
  ASSERT_TRUE(
      ledger_
          .RecordUsage({Ev("a", T("2026-01-10T00:00:00Z"), 0, 0, 999'000'000)},
                       "operator")
          .ok());
  clock_.Set(T("2026-02-02T00:00:00Z"));
  ASSERT_TRUE(ledger_.FinalizePeriod("2026-01").ok());
  // Late January event of 3,000,000 output tokens continues January's count:
  // 1 M x $0.80 = $0.80 (tier 1) + 2 M x $0.60 = $1.20 (tier 2), both as
  // adjustments for 2026-01 in February.
  ASSERT_TRUE(
      ledger_
          .RecordUsage({Ev("b", T("2026-01-31T00:00:00Z"), 0, 0, 3'000'000)},
                       "operator")
          .ok());
  v1::Statement feb = Statement("2026-02");
  const v1::StatementLine* t1 = FindLine(feb, "inference", "tier 1", "2026-01");
  const v1::StatementLine* t2 = FindLine(feb, "inference", "tier 2", "2026-01");
  ASSERT_NE(t1, nullptr) << feb.DebugString();
  ASSERT_NE(t2, nullptr) << feb.DebugString();
  EXPECT_EQ(t1->amount_cents(), 80);
  EXPECT_EQ(t2->amount_cents(), 120);
}

TEST_F(LedgerTest, LateReservedUsageAddsOnlyItsOwnOverage) {
  // G = 8 all January, overage $3.00. 8 GPUs reserved Jan 10 00:00-01:00
  // (within G) are on the finalized January statement; a late 2-GPU attempt
  // in the same hour makes 10 running: 2 GPU-h over x $3.00 = $6.00 in
  // February as an adjustment for January.
  ASSERT_TRUE(
      ledger_
          .CreateContract(MakeContract(8, "2026-01-01", "2026-02-01", "2", "3"))
          .ok());
  clock_.Set(T("2026-02-01T00:00:00Z"));
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("a", v1::SERVICE_CLASS_RESERVED, 8,
                                      T("2026-01-10T00:00:00Z"),
                                      T("2026-01-10T01:00:00Z")))
                  .ok());
  ASSERT_TRUE(ledger_.FinalizePeriod("2026-01").ok());
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("b", v1::SERVICE_CLASS_RESERVED, 2,
                                      T("2026-01-10T00:00:00Z"),
                                      T("2026-01-10T01:00:00Z")))
                  .ok());
  v1::Statement feb = Statement("2026-02");
  const v1::StatementLine* l = FindLine(feb, "reserved-overage", "", "2026-01");
  ASSERT_NE(l, nullptr) << feb.DebugString();
  EXPECT_EQ(l->quantity(), "2");
  EXPECT_EQ(l->amount_cents(), 600);
  EXPECT_EQ(FindLine(Statement("2026-01"), "reserved-overage", ""), nullptr);
}

TEST_F(LedgerTest, AddApplyJobUsageIsIdempotent) {
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-02-01T00:00:00Z"));
  JobUsage u = Job("x", v1::SERVICE_CLASS_ON_DEMAND, 1,
                   T("2026-01-10T00:00:00Z"), T("2026-01-10T01:00:00Z"));
  storage::WriteBatch batch;
  ledger_.AddJobUsage(u, &batch);
  ASSERT_EQ(batch.size(), 1u);
  ASSERT_TRUE(store_.Write(batch, {.sync = true}).ok());
  ledger_.ApplyJobUsage(u);
  ledger_.ApplyJobUsage(u);
  ASSERT_TRUE(ledger_.RecordJobUsage(u).ok());
  storage::WriteBatch again;
  ledger_.AddJobUsage(u, &again);
  EXPECT_TRUE(again.empty());
  // 1 GPU-h x $2.00 = $2.00, once.
  EXPECT_EQ(Statement("2026-01").total_cents(), 200);
  JobUsage bad = u;
  bad.end = bad.start - absl::Seconds(1);
  EXPECT_EQ(ledger_.RecordJobUsage(bad).code(),
            absl::StatusCode::kInvalidArgument);
}

// ============================================================== reload ===

TEST(LedgerReloadTest, RocksDbReopenGivesSameStatements) {
  char tmpl[] = "/tmp/joule-billing-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  v1::Statement jan, feb;
  v1::GetBacklogResponse backlog;
  std::vector<v1::UsageEvent> batch = {
      Ev("r1", T("2026-01-05T00:00:00Z"), 10, 3'000'000, 999'000'000),
      Ev("r2", T("2026-01-06T00:00:00Z"), 5, 1'000'000, 3'000'000)};
  {
    absl::StatusOr<std::unique_ptr<storage::RocksDbStore>> store =
        storage::RocksDbStore::Open({.path = dir});
    ASSERT_TRUE(store.ok()) << store.status();
    Ledger ledger(store->get(), &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger.SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z"))).ok());
    ASSERT_TRUE(ledger
                    .SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND,
                                       "2.49", T("2025-01-01T00:00:00Z")))
                    .ok());
    ASSERT_TRUE(ledger
                    .CreateContract(
                        MakeContract(8, "2026-01-16", "2026-04-16", "2", "3"))
                    .ok());
    clock.Set(T("2026-01-20T00:00:00Z"));
    ASSERT_TRUE(ledger.RecordUsage(batch, "operator").ok());
    ASSERT_TRUE(ledger
                    .RecordJobUsage(Job("j1", v1::SERVICE_CLASS_RESERVED, 10,
                                        T("2026-01-17T00:00:00Z"),
                                        T("2026-01-17T02:00:00Z"), 1, "H100",
                                        3'600'000'000))
                    .ok());
    ASSERT_TRUE(ledger
                    .RecordJobUsage(Job("j2", v1::SERVICE_CLASS_ON_DEMAND, 2,
                                        T("2026-01-31T23:00:00Z"),
                                        T("2026-02-01T01:00:00Z")))
                    .ok());
    clock.Set(T("2026-02-02T00:00:00Z"));
    ASSERT_TRUE(ledger.FinalizePeriod("2026-01").ok());
    ASSERT_TRUE(ledger
                    .RecordUsage({Ev("late", T("2026-01-31T00:00:00Z"), 1,
                                     1'000'000, 1'000'000)},
                                 "operator")
                    .ok());
    jan = *ledger.GetStatement("acme", "2026-01");
    feb = *ledger.GetStatement("acme", "2026-02");
    backlog = *ledger.Backlog(T("2026-02-15T00:00:00Z"));
    ASSERT_GT(feb.lines_size(), 4);
    ASSERT_GT(jan.lines_size(), 4);
    ASSERT_TRUE((*store)->Close().ok());
  }
  {
    absl::StatusOr<std::unique_ptr<storage::RocksDbStore>> store =
        storage::RocksDbStore::Open({.path = dir});
    ASSERT_TRUE(store.ok()) << store.status();
    Ledger ledger(store->get(), &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    EXPECT_TRUE(MessageDifferencer::Equals(
        *ledger.GetStatement("acme", "2026-01"), jan));
    absl::StatusOr<v1::Statement> feb2 = ledger.GetStatement("acme", "2026-02");
    EXPECT_TRUE(MessageDifferencer::Equals(*feb2, feb)) << feb2->DebugString();
    EXPECT_TRUE(MessageDifferencer::Equals(
        *ledger.Backlog(T("2026-02-15T00:00:00Z")), backlog));
    // Idempotency keys survived: the batch is all duplicates.
    absl::StatusOr<v1::RecordUsageResponse> r =
        ledger.RecordUsage(batch, "operator");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->duplicates(), 2u);
    // Counters continue.
    absl::StatusOr<v1::Price> p = ledger.SetPrice(GpuPrice(
        "A10", v1::SERVICE_CLASS_SPOT, "0.5", T("2026-03-01T00:00:00Z")));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->version(), 3u);
    absl::StatusOr<v1::Contract> c =
        ledger.CreateContract(MakeContract(1, "2026-03-01", "2026-04-01", "1"));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->id(), "C-000002");
    // The tier position survived too: January's output count is
    // 999 M + 3 M + 1 M (late) = 1003 M, so 1 M more late output is tier 2.
    ASSERT_TRUE(ledger
                    .RecordUsage({Ev("late2", T("2026-01-31T00:00:00Z"), 0, 0,
                                     1'000'000)},
                                 "operator")
                    .ok());
    v1::Statement st = *ledger.GetStatement("acme", "2026-02");
    const v1::StatementLine* t2 =
        FindLine(st, "inference", "tier 2", "2026-01");
    ASSERT_NE(t2, nullptr) << st.DebugString();
    EXPECT_EQ(t2->quantity(), "2");  // 1 M (late) + 1 M (late2)
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace joule::billing
