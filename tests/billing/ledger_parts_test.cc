// RecordUsage on a store that limits ops and bytes per write (as etcd does):
// a big batch is recorded in parts, each atomic and self-contained (its
// events' packed records and the aggregates after them), so a failure
// between parts followed by a re-run still counts every event exactly once.
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "billing/ledger.h"
#include "billing/usage_pack.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "tests/billing/ledger_test_util.h"

namespace joule::billing {
namespace {

// A MemoryStore (`inner`) behind a PartsStore that takes at most `max_ops`
// ops and `max_bytes` bytes (0: no limit) per write.
struct MemoryBase {
  storage::MemoryStore inner;
};
struct LimitedStore : MemoryBase, PartsStore {
  explicit LimitedStore(int64_t max_ops, int64_t max_bytes = 0)
      : PartsStore(&inner, max_ops, max_bytes) {}
};

// $1 per 1M input tokens, nothing else.
v1::Price Price() {
  v1::Price p;
  p.mutable_inference()->set_model("m");
  auto* in = p.mutable_inference()->add_input();
  in->set_from_tokens(0);
  in->set_price("1.00");
  *p.mutable_effective_from() = Ts(T("2025-01-01T00:00:00Z"));
  return p;
}

std::vector<v1::UsageEvent> Batch(int n) {
  std::vector<v1::UsageEvent> b;
  for (int i = 0; i < n; ++i) {
    v1::UsageEvent e;
    *e.mutable_time() = Ts(T("2025-12-31T12:00:00Z"));
    e.set_tenant("acme");
    e.set_model("m");
    e.set_requests(1);
    e.set_input_tokens(1'000'000);  // $1 each
    e.set_idempotency_key(absl::StrCat("k", i));
    b.push_back(e);
  }
  return b;
}

TEST(LedgerPartsTest, ManyEventsTakeOnePackAndOneAggregate) {
  // Ops no longer grow with the events: 10 events are one pack and one
  // aggregate, 2 ops, within a limit of 12.
  LimitedStore store(12);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  const int before = store.writes;
  auto r = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 10u);
  EXPECT_EQ(store.writes - before, 1);
  EXPECT_EQ(store.records_per_write, std::vector<int64_t>({10}));
  EXPECT_TRUE(store.inner
                  .Scan(storage::kUsage, "",
                        [](auto, auto) {
                          ADD_FAILURE() << "a single usage record was written";
                          return true;
                        })
                  .ok());
}

TEST(LedgerPartsTest, BigBatchIsWrittenInPartsUnderTheByteLimit) {
  // ~90 bytes per event (16-byte key, ~70-byte record, framing), ~200 for
  // the aggregate and the pack key: 700 bytes hold a few events a part.
  LimitedStore store(12, 700);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  auto r = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(r.ok()) << r.status();  // no write was refused
  EXPECT_EQ(r->accepted(), 10u);
  ASSERT_GE(store.records_per_write.size(), 2u);
  int64_t sum = 0;
  for (int64_t n : store.records_per_write) sum += n;
  EXPECT_EQ(sum, 10);
  auto st = ledger.GetStatement("acme", "2025-12");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->total_cents(), 1000);  // 10 x $1
}

TEST(LedgerPartsTest, CrashBetweenPartsThenReRunCountsEachEventOnce) {
  LimitedStore store(12, 700);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  int64_t first_part = 0;
  {
    Ledger ledger(&store, &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger.SetPrice(Price()).ok());
    store.fail_write = store.writes + 2;  // the second part fails
    auto r = ledger.RecordUsage(Batch(10), "operator");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    ASSERT_EQ(store.records_per_write.size(), 1u);
    first_part = store.records_per_write[0];
    ASSERT_GT(first_part, 0);
    ASSERT_LT(first_part, 10);
  }
  // A new jouled (the standby) loads what is in the store and the client
  // re-sends the whole batch.
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  // Before the re-run the statement holds exactly the first part.
  EXPECT_EQ(ledger.GetStatement("acme", "2025-12")->total_cents(),
            100 * first_part);
  auto r = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), static_cast<uint32_t>(first_part));
  EXPECT_EQ(r->accepted(), static_cast<uint32_t>(10 - first_part));
  auto st = ledger.GetStatement("acme", "2025-12");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->total_cents(), 1000);  // 10 x $1, none twice
  // And once more: all ten are duplicates.
  auto again = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates(), 10u);
}

TEST(LedgerPartsTest, ErrorsNameTheIndexInTheWholeBatch) {
  LimitedStore store(12, 700);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  std::vector<v1::UsageEvent> b = Batch(10);
  b[9].set_tenant("nobody");  // in a later part
  auto r = ledger.RecordUsage(b, "operator");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message().substr(0, 17), "events[9].tenant:")
      << r.status();
  // Validation comes first: nothing of the batch was written.
  EXPECT_TRUE(store.records_per_write.empty());
  // A payload conflict in a later part: the earlier parts were recorded,
  // and the error says which.
  ASSERT_TRUE(ledger.RecordUsage(Batch(1), "operator").ok());  // k0
  std::vector<v1::UsageEvent> c = Batch(10);
  c[0].set_idempotency_key("new-0");
  c[9].set_idempotency_key("k0");
  c[9].set_requests(7);  // k0 with another payload
  auto conflict = ledger.RecordUsage(c, "operator");
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(conflict.status().message().find("events[9].idempotency_key"),
            std::string::npos)
      << conflict.status();
  EXPECT_NE(conflict.status().message().find("] were recorded; re-sending"),
            std::string::npos)
      << conflict.status();
}

TEST(UsageDedupWindowTest, OldEventsRefusedAndOldRecordsCompacted) {
  LimitedStore store(12);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  // 10 events on 2025-12-31T12:00 ($1 each).
  ASSERT_TRUE(ledger.RecordUsage(Batch(10), "operator").ok());
  // Infinite window (the default): nothing to compact.
  EXPECT_EQ(*ledger.CompactUsageRecords(), 0);

  ledger.set_usage_dedup_window(absl::Hours(24) * 35);
  // 36 days later the events are past the window: refused, and their
  // records are deleted in writes of <= 12 ops (all 10 in one).
  clock.Set(T("2026-02-05T12:00:01Z"));
  auto again = ledger.RecordUsage(Batch(10), "operator");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(again.status().message().find("events[0].time: older than the "
                                          "usage dedup window"),
            std::string::npos)
      << again.status();
  const int before = store.writes;
  auto n = ledger.CompactUsageRecords();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 10);
  EXPECT_EQ(store.writes - before, 1);
  // Amounts come from the aggregates: the statement is unchanged.
  auto st = ledger.GetStatement("acme", "2025-12");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->total_cents(), 1000);
  // A reloaded ledger (new leader) agrees.
  Ledger reloaded(&store, &clock, &tenants);
  ASSERT_TRUE(reloaded.Load().ok());
  EXPECT_EQ(reloaded.GetStatement("acme", "2025-12")->total_cents(), 1000);
}

}  // namespace
}  // namespace joule::billing
