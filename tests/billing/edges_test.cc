// Regression tests of the billing edges of issue 12 (overflow, reserved
// overage per attempt, idempotency per source, unpriced use, future-dated
// events, finalize order, catalogue names, backlog per model, running
// attempts). Every expected amount has its arithmetic in a comment.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/billing/ledger_test_util.h"

namespace joule::billing {
namespace {

using ::testing::HasSubstr;

v1::Price RequestPrice(const std::string& model, const std::string& per_request,
                       absl::Time from) {
  v1::Price p;
  p.mutable_inference()->set_model(model);
  p.mutable_inference()->set_per_request(per_request);
  *p.mutable_effective_from() = Ts(from);
  return p;
}

v1::Contract H100Contract(uint32_t gpus, const std::string& start,
                          const std::string& end, const std::string& rate,
                          const std::string& overage = "") {
  v1::Contract c;
  c.set_tenant("acme");
  c.set_gpu_model("H100");
  c.set_gpus(gpus);
  c.set_start_date(start);
  c.set_end_date(end);
  c.set_rate(rate);
  c.set_overage_rate(overage);
  return c;
}

// ------------------------------------------------------------ item 1 ----

TEST_F(LedgerTest, Item1PerEventBoundRefusesHugeRequestCount) {
  clock_.Set(T("2026-11-15T00:00:00Z"));
  SetPrice(RequestPrice("api", "1.00", T("2026-01-01T00:00:00Z")));
  // 10^17 requests at $1.00 = $10^17: over the 10^12 per-event bound.
  absl::StatusOr<v1::RecordUsageResponse> r =
      ledger_.RecordUsage({Ev("k", T("2026-11-10T00:00:00Z"),
                              100'000'000'000'000'000, 0, 0, "acme", "api")},
                          "operator");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("events[0].requests"));
  EXPECT_THAT(r.status().message(), HasSubstr("1000000000000"));
  // Nothing stored; the period can be finalized.
  clock_.Set(T("2026-12-01T00:00:00Z"));
  EXPECT_TRUE(ledger_.FinalizePeriod("2026-11").ok());
}

TEST_F(LedgerTest, Item1LineBoundRefusesTheEventThatWouldOverflow) {
  clock_.Set(T("2026-11-15T00:00:00Z"));
  // $1,000,000 per request (the largest price).
  SetPrice(RequestPrice("api", "1000000", T("2026-01-01T00:00:00Z")));
  // 10^6 requests x $10^6 = $10^12 = the largest line: accepted.
  ASSERT_TRUE(ledger_
                  .RecordUsage({Ev("a", T("2026-11-10T00:00:00Z"), 1'000'000, 0,
                                   0, "acme", "api")},
                               "operator")
                  .ok());
  // One more request: $10^12 + $10^6 > the bound: refused, naming the
  // event, the field, the tenant and the model.
  absl::StatusOr<v1::RecordUsageResponse> r = ledger_.RecordUsage(
      {Ev("b", T("2026-11-10T00:00:00Z"), 1, 0, 0, "acme", "api")}, "operator");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("events[0].requests"));
  EXPECT_THAT(r.status().message(), HasSubstr("\"acme\""));
  EXPECT_THAT(r.status().message(), HasSubstr("\"api\""));
  // A later price version that would push the month over the bound is
  // refused too (any price version of the item): $2,000,000 is above the
  // largest price; $1,000,000 again is fine.
  v1::Price higher =
      RequestPrice("api", "1000000.01", T("2026-12-01T00:00:00Z"));
  EXPECT_EQ(ledger_.SetPrice(higher).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The period can always be finalized: 10^6 x $10^6 = $10^12 = 10^14 cents.
  clock_.Set(T("2026-12-01T00:00:00Z"));
  absl::StatusOr<v1::FinalizePeriodResponse> f =
      ledger_.FinalizePeriod("2026-11");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->statements(0).total_cents(), 100'000'000'000'000);
}

TEST_F(LedgerTest, Item1PriceChangeThatWouldOverflowStoredUsageIsRefused) {
  clock_.Set(T("2026-11-15T00:00:00Z"));
  SetPrice(RequestPrice("api", "1", T("2026-01-01T00:00:00Z")));
  // 10^12 requests x $1 = $10^12: the largest line.
  ASSERT_TRUE(ledger_
                  .RecordUsage({Ev("a", T("2026-11-10T00:00:00Z"),
                                   1'000'000'000'000, 0, 0, "acme", "api")},
                               "operator")
                  .ok());
  // At $2 the same month would be $2 x 10^12 > $10^12: refused.
  absl::StatusOr<v1::Price> r =
      ledger_.SetPrice(RequestPrice("api", "2", T("2026-12-01T00:00:00Z")));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("\"acme\""));
  EXPECT_THAT(r.status().message(), HasSubstr("2026-11"));
}

TEST_F(LedgerTest, Item1OverflowErrorNamesTenantAndLine) {
  clock_.Set(T("2026-02-01T00:00:00Z"));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "1000000",
                    T("2025-01-01T00:00:00Z")));
  // 4e9 GPUs x 31 days (2,678,400 s) x $10^6/h = 2.98e24 micro-dollars =
  // 2.98e20 cents: more than int64 cents.
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("big", v1::SERVICE_CLASS_ON_DEMAND,
                                      4'000'000'000u, T("2026-01-01T00:00:00Z"),
                                      T("2026-02-01T00:00:00Z")))
                  .ok());
  absl::StatusOr<v1::Statement> st = ledger_.GetStatement("acme", "2026-01");
  ASSERT_EQ(st.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.status().message(), HasSubstr("tenant \"acme\""));
  EXPECT_THAT(st.status().message(), HasSubstr("on-demand / H100"));
}

TEST_F(LedgerTest, Item5ContractValueIsRoundedOnceByTheLedger) {
  // 1 GPU x 24 h x $0.000625 = 15,000 micro-dollars = 1.5 cents: half-even
  // -> 2 cents (the CLI used to truncate to 1).
  absl::StatusOr<v1::Contract> c = ledger_.CreateContract(
      H100Contract(1, "2026-01-01", "2026-01-02", "0.000625"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->value_micros(), 15'000);
  EXPECT_EQ(c->value_cents(), 2);
  EXPECT_EQ(ledger_.ListContracts("acme")[0].value_cents(), 2);
}

// ------------------------------------------------------------ item 2 ----

TEST_F(LedgerTest, Item2ReservedBeyondContractIsOverageAndAttributed) {
  clock_.Set(T("2026-11-20T00:00:00Z"));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "36",
                    T("2026-01-01T00:00:00Z")));
  ASSERT_TRUE(ledger_
                  .CreateContract(H100Contract(2, "2026-11-01", "2026-12-01",
                                               "1.00", "180"))
                  .ok());
  // A 4-GPU reserved job for 20 s: 2 GPUs covered, 2 x 20 s = 40 GPU-s x
  // $180/h = $2.00 of overage (not 4 x 20 s x $36/h = $0.80 on-demand).
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("job-1", v1::SERVICE_CLASS_RESERVED, 4,
                                      T("2026-11-10T00:00:00Z"),
                                      T("2026-11-10T00:00:20Z")))
                  .ok());
  v1::Statement st = Statement("2026-11");
  const v1::StatementLine* over = FindLine(st, "reserved-overage", "beyond");
  ASSERT_NE(over, nullptr);
  EXPECT_EQ(over->amount_cents(), 200);
  EXPECT_EQ(over->unit_price(), "180.00");
  EXPECT_EQ(FindLine(st, "on-demand", ""), nullptr);
  ASSERT_EQ(st.attempts_size(), 1);
  EXPECT_EQ(st.attempts(0).covered_gpu_seconds(), 40);  // 2 x 20 s
  EXPECT_EQ(st.attempts(0).overage_gpu_seconds(), 40);  // 2 x 20 s
  // job show's view: the same per attempt.
  absl::StatusOr<v1::GetJobBillingResponse> jb =
      ledger_.JobBilling("job-1", "");
  ASSERT_TRUE(jb.ok()) << jb.status();
  ASSERT_EQ(jb->attempts_size(), 1);
  EXPECT_EQ(jb->attempts(0).overage_gpu_seconds(), 40);
  EXPECT_THAT(jb->attempts(0).how(), HasSubstr("40 GPU-s covered"));
  // Another tenant cannot see it.
  EXPECT_EQ(ledger_.JobBilling("job-1", "globex").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LedgerTest, Item2EarliestStartedAttemptIsCoveredFirst) {
  clock_.Set(T("2026-11-20T00:00:00Z"));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "36",
                    T("2026-01-01T00:00:00Z")));
  ASSERT_TRUE(
      ledger_
          .CreateContract(H100Contract(2, "2026-11-01", "2026-12-01", "1.00"))
          .ok());
  // a: 2 GPUs 00:00-01:00; b: 2 GPUs 00:30-01:30. 00:30-01:00 4 run, G=2:
  // a (earlier) covered all hour, b overage 2 x 1800 s = 3600 GPU-s at the
  // on-demand $36 = $36.00; b covered 2 x 1800 s after a ended.
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("a", v1::SERVICE_CLASS_RESERVED, 2,
                                      T("2026-11-10T00:00:00Z"),
                                      T("2026-11-10T01:00:00Z")))
                  .ok());
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("b", v1::SERVICE_CLASS_RESERVED, 2,
                                      T("2026-11-10T00:30:00Z"),
                                      T("2026-11-10T01:30:00Z")))
                  .ok());
  v1::Statement st = Statement("2026-11");
  EXPECT_EQ(FindLine(st, "reserved-overage", "beyond")->amount_cents(), 3600);
  ASSERT_EQ(st.attempts_size(), 2);
  EXPECT_EQ(st.attempts(0).job_id(), "a");
  EXPECT_EQ(st.attempts(0).covered_gpu_seconds(), 7200);
  EXPECT_EQ(st.attempts(0).overage_gpu_seconds(), 0);
  EXPECT_EQ(st.attempts(1).covered_gpu_seconds(), 3600);
  EXPECT_EQ(st.attempts(1).overage_gpu_seconds(), 3600);
}

TEST(BilledClassTest, ReservedStaysReserved) {
  EXPECT_EQ(
      BilledClass(v1::SERVICE_CLASS_RESERVED, v1::SERVICE_CLASS_ON_DEMAND),
      v1::SERVICE_CLASS_RESERVED);
  EXPECT_EQ(BilledClass(v1::SERVICE_CLASS_SPOT, v1::SERVICE_CLASS_SPOT),
            v1::SERVICE_CLASS_SPOT);
}

// ------------------------------------------------------------ item 3 ----

TEST_F(LedgerTest, Item3KeysAreScopedPerSource) {
  clock_.Set(T("2026-11-20T00:00:00Z"));
  SetPrice(LlamaPrice(T("2026-01-01T00:00:00Z")));
  // The tenant records meter-42 with zero tokens first...
  ASSERT_TRUE(
      ledger_
          .RecordUsage({Ev("meter-42", T("2026-11-10T00:00:00Z"), 1, 0, 0)},
                       "acme")
          .ok());
  // ...the operator's feed row meter-42 (5M in, 5M out) is still new.
  absl::StatusOr<v1::RecordUsageResponse> r = ledger_.RecordUsage(
      {Ev("meter-42", T("2026-11-10T00:00:00Z"), 1, 5'000'000, 5'000'000)},
      "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 1u);
  // 5 M x $0.50 = $2.50 + 5 M x $0.80 = $4.00 + 2 x $0.0001 = $0.0002 ->
  // $0.00: total $6.50.
  EXPECT_EQ(Statement("2026-11").total_cents(), 650);
  // A retry from the same source is a duplicate.
  r = ledger_.RecordUsage(
      {Ev("meter-42", T("2026-11-10T00:00:00Z"), 1, 5'000'000, 5'000'000)},
      "operator");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->duplicates(), 1u);
}

TEST(LedgerMigrationTest, LegacyKeysLoadAsOperatorKeys) {
  storage::MemoryStore store;
  FakeClock clock(T("2026-11-20T00:00:00Z"));
  FakeTenants tenants;
  {
    Ledger ledger(&store, &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger.SetPrice(LlamaPrice(T("2026-01-01T00:00:00Z"))).ok());
  }
  // A key as stored before the source scope: `tenant \0 key`.
  v1::billing::UsageRecord legacy;
  legacy.set_tenant("acme");
  legacy.set_model("llama-70b");
  legacy.set_requests(1);
  *legacy.mutable_time() = Ts(T("2026-11-10T00:00:00Z"));
  ASSERT_TRUE(store
                  .Put(storage::kUsage, std::string("acme\0old-1", 10),
                       legacy.SerializeAsString())
                  .ok());
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  // The operator's retry of that row is a duplicate (migrated to source
  // "operator"); the legacy key is gone.
  absl::StatusOr<v1::RecordUsageResponse> r = ledger.RecordUsage(
      {Ev("old-1", T("2026-11-10T00:00:00Z"), 1, 0, 0)}, "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 1u);
  EXPECT_FALSE(
      store.Get(storage::kUsage, std::string("acme\0old-1", 10))->has_value());
}

// ------------------------------------------------------------ item 4 ----

TEST_F(LedgerTest, Item4CheckPricedAtSubmit) {
  ledger_.SetGpuCatalogue({"H100", "A100"});
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  const absl::Time now = clock_.Now();
  EXPECT_TRUE(
      ledger_.CheckPriced("acme", "H100", v1::SERVICE_CLASS_ON_DEMAND, now)
          .ok());
  absl::Status spot =
      ledger_.CheckPriced("acme", "H100", v1::SERVICE_CLASS_SPOT, now);
  EXPECT_EQ(spot.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(spot.message(), HasSubstr("spot"));
  // Reserved is priced by the on-demand price (the default overage rate).
  EXPECT_TRUE(
      ledger_.CheckPriced("acme", "H100", v1::SERVICE_CLASS_RESERVED, now)
          .ok());
  // Any model: every catalogue model must be priced; A100 is not.
  absl::Status any =
      ledger_.CheckPriced("acme", "", v1::SERVICE_CLASS_ON_DEMAND, now);
  EXPECT_THAT(any.message(), HasSubstr("A100"));
}

TEST_F(LedgerTest, Item4UnpricedLineBlocksFinalizeUntilBackdatedFirstPrice) {
  clock_.Set(T("2026-02-01T00:00:00Z"));
  // 1 spot GPU for 1 h in January with no spot price: unpriced line.
  ASSERT_TRUE(ledger_
                  .RecordJobUsage(Job("s", v1::SERVICE_CLASS_SPOT, 1,
                                      T("2026-01-10T00:00:00Z"),
                                      T("2026-01-10T01:00:00Z")))
                  .ok());
  ASSERT_NE(FindLine(Statement("2026-01"), "spot", "no price in effect"),
            nullptr);
  absl::StatusOr<v1::FinalizePeriodResponse> f =
      ledger_.FinalizePeriod("2026-01");
  ASSERT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(f.status().message(), HasSubstr("spot / H100"));
  // The first spot price may be backdated into the open January: the
  // statement is re-rated (1 GPU-h x $0.80 = $0.80) and finalize works.
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_SPOT, "0.80",
                    T("2026-01-01T00:00:00Z")));
  EXPECT_EQ(Statement("2026-01").total_cents(), 80);
  f = ledger_.FinalizePeriod("2026-01");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->statements(0).total_cents(), 80);
  // A first price may not be backdated into the finalized January.
  absl::StatusOr<v1::Price> a100 = ledger_.SetPrice(GpuPrice(
      "A100", v1::SERVICE_CLASS_SPOT, "0.50", T("2026-01-15T00:00:00Z")));
  EXPECT_EQ(a100.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a100.status().message(), HasSubstr("finalized period 2026-01"));
}

// ------------------------------------------------------------ item 7 ----

TEST_F(LedgerTest, Item7FutureDatedEventIsReratedByALaterAcceptedChange) {
  clock_.Set(T("2026-01-10T00:00:00Z"));
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  // 4 minutes ahead: 1,000,000 input tokens, rated at $0.50 on arrival.
  ASSERT_TRUE(
      ledger_
          .RecordUsage({Ev("f", T("2026-01-10T00:04:00Z"), 0, 1'000'000, 0)},
                       "operator")
          .ok());
  EXPECT_EQ(Statement("2026-01").total_cents(), 50);  // 1 M x $0.50
  // A change effective at 00:02 (before the event) accepted afterwards.
  v1::Price change = LlamaPrice(T("2026-01-10T00:02:00Z"));
  change.mutable_inference()->mutable_input(0)->set_price("1.00");
  SetPrice(change);
  // Re-rated: 1 M x $1.00 = $1.00, and nothing left at $0.50.
  v1::Statement st = Statement("2026-01");
  EXPECT_EQ(st.total_cents(), 100);
  EXPECT_EQ(FindLine(st, "inference", "input", "", "0.50"), nullptr);
  // A later event continues the same month's tier count.
  ASSERT_NE(FindLine(st, "inference", "input", "", "1.00"), nullptr);
}

TEST(LedgerReloadFutureTest, FutureDatedEventIsReratedAfterARestart) {
  storage::MemoryStore store;
  FakeClock clock(T("2026-01-10T00:00:00Z"));
  FakeTenants tenants;
  {
    Ledger ledger(&store, &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger.SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z"))).ok());
    // 1,000,000 input tokens dated 00:04, rated at $0.50 on arrival.
    ASSERT_TRUE(
        ledger
            .RecordUsage({Ev("f", T("2026-01-10T00:04:00Z"), 0, 1'000'000, 0)},
                         "operator")
            .ok());
  }
  // Restart, then a change effective 00:02 (before the event): $1.00.
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  v1::Price change = LlamaPrice(T("2026-01-10T00:02:00Z"));
  change.mutable_inference()->mutable_input(0)->set_price("1.00");
  ASSERT_TRUE(ledger.SetPrice(change).ok());
  // 1 M x $1.00 = $1.00.
  EXPECT_EQ(ledger.GetStatement("acme", "2026-01")->total_cents(), 100);
  // Once its time has passed it is forgotten (the meta record deleted by
  // the next write).
  clock.Set(T("2026-01-10T00:10:00Z"));
  ASSERT_TRUE(ledger
                  .RecordUsage({Ev("g", T("2026-01-10T00:09:00Z"), 0, 1, 0)},
                               "operator")
                  .ok());
  int left = 0;
  ASSERT_TRUE(store
                  .Scan(storage::kMeta, "billing/future/",
                        [&](std::string_view, std::string_view) {
                          ++left;
                          return true;
                        })
                  .ok());
  EXPECT_EQ(left, 0);
}

// ------------------------------------------------------------ item 8 ----

TEST_F(LedgerTest, Item8FinalizeInOrder) {
  clock_.Set(T("2026-03-01T00:00:00Z"));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  for (const char* day : {"2026-01-10", "2026-02-10"}) {
    ASSERT_TRUE(
        ledger_
            .RecordJobUsage(Job(day, v1::SERVICE_CLASS_ON_DEMAND, 1,
                                T((std::string(day) + "T00:00:00Z").c_str()),
                                T((std::string(day) + "T01:00:00Z").c_str())))
            .ok());
  }
  absl::StatusOr<v1::FinalizePeriodResponse> f =
      ledger_.FinalizePeriod("2026-02");
  ASSERT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(f.status().message(), HasSubstr("2026-01"));
  ASSERT_TRUE(ledger_.FinalizePeriod("2026-01").ok());
  EXPECT_TRUE(ledger_.FinalizePeriod("2026-02").ok());
}

TEST_F(LedgerTest, Item8GpuModelNamesAreCheckedAgainstTheCatalogue) {
  ledger_.SetGpuCatalogue({"H100", "A100"});
  absl::StatusOr<v1::Price> p = ledger_.SetPrice(GpuPrice(
      "h100", v1::SERVICE_CLASS_ON_DEMAND, "2.00", T("2025-01-01T00:00:00Z")));
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("price.gpu_hour.gpu_model"));
  EXPECT_THAT(p.status().message(), HasSubstr("H100, A100"));
  v1::Contract c = H100Contract(8, "2026-01-01", "2026-02-01", "2.00");
  c.set_gpu_model("h100");
  absl::StatusOr<v1::Contract> k = ledger_.CreateContract(c);
  ASSERT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr("contract.gpu_model"));
}

TEST_F(LedgerTest, Item8BacklogTotalsPerModelAndInDollars) {
  ASSERT_TRUE(
      ledger_
          .CreateContract(H100Contract(8, "2026-01-01", "2026-02-01", "2.00"))
          .ok());
  v1::Contract a = H100Contract(4, "2026-01-01", "2026-02-01", "1.00");
  a.set_gpu_model("A100");
  ASSERT_TRUE(ledger_.CreateContract(a).ok());
  absl::StatusOr<v1::GetBacklogResponse> b =
      ledger_.Backlog(T("2026-01-01T00:00:00Z"));
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->model_totals_size(), 2);
  // A100: 4 x 744 h x $1.00 = $2,976.00; H100: 8 x 744 h x $2.00 =
  // $11,904.00; total $14,880.00 and no GPU count across models.
  EXPECT_EQ(b->model_totals(0).gpu_model(), "A100");
  EXPECT_EQ(b->model_totals(0).gpus(), 4u);
  EXPECT_EQ(b->model_totals(0).value_cents(), 297'600);
  EXPECT_EQ(b->model_totals(1).gpus(), 8u);
  EXPECT_EQ(b->model_totals(1).value_cents(), 1'190'400);
  EXPECT_EQ(b->total().value_cents(), 1'488'000);
  EXPECT_EQ(b->total().gpus(), 0u);
}

TEST_F(LedgerTest, Item8RunningAttemptsAccrueToNow) {
  clock_.Set(T("2026-01-10T02:00:00Z"));
  SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                    T("2025-01-01T00:00:00Z")));
  ledger_.SetRunningAttempts([this] {
    // 2 GPUs since 01:00, still running at 02:00.
    return std::vector<JobUsage>{Job("r", v1::SERVICE_CLASS_ON_DEMAND, 2,
                                     T("2026-01-10T01:00:00Z"), clock_.Now())};
  });
  v1::Statement st = Statement("2026-01");
  // 2 GPUs x 1 h = 2 GPU-h x $2.00 = $4.00, "in progress, to now".
  const v1::StatementLine* l = FindLine(st, "on-demand", "in progress, to now");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->amount_cents(), 400);
  ASSERT_EQ(st.attempts_size(), 1);
  EXPECT_TRUE(st.attempts(0).in_progress());
}

}  // namespace
}  // namespace joule::billing
