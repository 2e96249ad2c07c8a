// Usage ingestion, exactly once, on every Store implementation (memory,
// RocksDB, a real etcd member): the same suite for all (Mesos style). The
// store is wrapped in a decorator that limits the bytes per write (so big
// batches are split into parts, as on etcd), counts the usage records each
// write carries, and can fail a chosen write (a crash between parts).
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "billing/ledger.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "storage/etcd_store.h"
#include "tests/billing/ledger_test_util.h"
#include "tests/storage/test_stores.h"

namespace joule::billing {
namespace {

// $1 per 1M input tokens.
v1::Price InputPrice() {
  v1::Price p;
  p.mutable_inference()->set_model("llama-70b");
  auto* in = p.mutable_inference()->add_input();
  in->set_from_tokens(0);
  in->set_price("1.00");
  *p.mutable_effective_from() = Ts(T("2026-01-01T00:00:00Z"));
  return p;
}

// n events of $1 each, keys prefix0..prefix(n-1), at `t`.
std::vector<v1::UsageEvent> Events(int n, std::string_view prefix, absl::Time t,
                                   std::string_view tenant = "acme") {
  std::vector<v1::UsageEvent> b(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    v1::UsageEvent& e = b[static_cast<size_t>(i)];
    *e.mutable_time() = Ts(t);
    e.set_tenant(std::string(tenant));
    e.set_model("llama-70b");
    e.set_requests(1);
    e.set_input_tokens(1'000'000);
    e.set_idempotency_key(absl::StrCat(std::string(prefix), i));
  }
  return b;
}

class UsageStoresTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    storage::EtcdStore::Options o;
    o.prefix = "/usage";
    o.max_txn_ops = 10240;
    o.max_request_bytes = 10 << 20;
    auto s = joule::testing::OpenTestStore(GetParam(), o);
    if (absl::IsUnavailable(s.status())) GTEST_SKIP() << s.status().message();
    ASSERT_TRUE(s.ok()) << s.status();
    opened_ = std::move(*s);
    base_ = opened_.get();
    // ~90 bytes per event: 20 KB parts of ~200 events.
    store_ = std::make_unique<PartsStore>(base_, 0, 20 << 10);
    ledger_ = NewLedger();
    ASSERT_TRUE(ledger_->SetPrice(InputPrice()).ok());
  }
  void TearDown() override {
    ledger_.reset();
    store_.reset();
  }
  // A new jouled over the same store (a restart or the standby taking
  // over): everything it knows comes from Load.
  std::unique_ptr<Ledger> NewLedger() {
    auto l = std::make_unique<Ledger>(store_.get(), &clock_, &tenants_);
    EXPECT_TRUE(l->Load().ok());
    l->set_usage_dedup_window(absl::Hours(24 * 35));
    return l;
  }
  int64_t Cents(Ledger& l, std::string_view tenant = "acme") {
    auto st = l.GetStatement(tenant, "2026-03");
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? st->total_cents() : -1;
  }

  FakeClock clock_{T("2026-03-20T00:00:00Z")};
  FakeTenants tenants_;
  joule::testing::TestStore opened_;
  storage::Store* base_ = nullptr;
  std::unique_ptr<PartsStore> store_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_P(UsageStoresTest, RetriesPartsCrashAndFailoverCountEachEventOnce) {
  const absl::Time t = T("2026-03-10T00:00:00Z");
  // 1,000 events: several parts of at most 20 KB, each one write.
  auto r = ledger_->RecordUsage(Events(1000, "a", t), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 1000u);
  ASSERT_GE(store_->records_per_write.size(), 3u);
  int64_t sum = 0;
  for (int64_t n : store_->records_per_write) sum += n;
  EXPECT_EQ(sum, 1000);
  EXPECT_EQ(Cents(*ledger_), 100'000);  // 1,000 x $1
  // The client retries the whole batch: all duplicates.
  r = ledger_->RecordUsage(Events(1000, "a", t), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 1000u);
  EXPECT_EQ(r->accepted(), 0u);

  // A second batch dies after its first part (jouled SIGKILLed between
  // parts: the next write never happens).
  store_->records_per_write.clear();
  store_->fail_write = store_->writes + 2;
  r = ledger_->RecordUsage(Events(1000, "b", t), "operator");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(store_->records_per_write.size(), 1u);
  const int64_t first = store_->records_per_write[0];
  ledger_.reset();

  // The standby loads the store: exactly the first part is there.
  ledger_ = NewLedger();
  EXPECT_EQ(Cents(*ledger_), 100 * (1000 + first));
  // The client re-sends both batches to it.
  r = ledger_->RecordUsage(Events(1000, "b", t), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), static_cast<uint32_t>(first));
  EXPECT_EQ(r->accepted(), static_cast<uint32_t>(1000 - first));
  r = ledger_->RecordUsage(Events(1000, "a", t), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 1000u);
  EXPECT_EQ(Cents(*ledger_), 200'000);  // 2,000 x $1, none twice

  // A key reused with another payload is refused, after a reload too.
  std::vector<v1::UsageEvent> conflict = Events(1, "a", t);
  conflict[0].set_requests(2);
  EXPECT_EQ(ledger_->RecordUsage(conflict, "operator").status().code(),
            absl::StatusCode::kAlreadyExists);
  // Another source's same key is its own event.
  r = ledger_->RecordUsage(Events(1, "a", t), "feed-2");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 1u);
}

TEST_P(UsageStoresTest, FutureDatedEventsAndMixedBatches) {
  // Events up to 5 minutes ahead are single records (a later price change
  // may re-rate them); the rest of the batch is packed; both dedup.
  std::vector<v1::UsageEvent> b = Events(10, "m", T("2026-03-19T00:00:00Z"));
  std::vector<v1::UsageEvent> ahead =
      Events(3, "f", clock_.Now() + absl::Minutes(2));
  b.insert(b.end(), ahead.begin(), ahead.end());
  // And several aggregates in one part: two tenants x two months.
  for (const char* tenant : {"acme", "globex"}) {
    for (const char* t : {"2026-02-20T00:00:00Z", "2026-03-02T00:00:00Z"}) {
      std::vector<v1::UsageEvent> more =
          Events(4, absl::StrCat(tenant, t), T(t), tenant);
      b.insert(b.end(), more.begin(), more.end());
    }
  }
  auto r = ledger_->RecordUsage(b, "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 29u);
  ledger_ = NewLedger();
  r = ledger_->RecordUsage(b, "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 29u);
  EXPECT_EQ(Cents(*ledger_), 1700);           // 10 + 3 + 4 in March
  EXPECT_EQ(Cents(*ledger_, "globex"), 400);  // 4 in March
}

TEST_P(UsageStoresTest, CompactionDeletesPacksPastTheWindowOnly) {
  // Pack A: events of 2026-03-01 only. Pack B: 2026-03-01 and 2026-03-19.
  ASSERT_TRUE(
      ledger_
          ->RecordUsage(Events(5, "old", T("2026-03-01T00:00:00Z")), "operator")
          .ok());
  std::vector<v1::UsageEvent> mixed =
      Events(5, "mix", T("2026-03-01T00:00:00Z"));
  mixed.back() = Events(1, "new", T("2026-03-19T00:00:00Z"))[0];
  ASSERT_TRUE(ledger_->RecordUsage(mixed, "operator").ok());
  // 35 days after 03-01 12:00: A's events are past the window, B has one
  // that is not: only A's 5 records go.
  clock_.Set(T("2026-04-05T12:00:00Z"));
  auto n = ledger_->CompactUsageRecords();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5);
  EXPECT_EQ(*ledger_->CompactUsageRecords(), 0);
  // B's newest event is still deduplicated, by this ledger and a new one.
  auto r = ledger_->RecordUsage(Events(1, "new", T("2026-03-19T00:00:00Z")),
                                "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 1u);
  ledger_ = NewLedger();
  r = ledger_->RecordUsage(Events(1, "new", T("2026-03-19T00:00:00Z")),
                           "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 1u);
  // Past B's newest event too: the rest goes; amounts never change (they
  // are in the aggregates).
  clock_.Set(T("2026-04-23T12:00:00Z"));
  n = ledger_->CompactUsageRecords();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5);
  EXPECT_EQ(Cents(*ledger_), 1000);
  int packs = 0;
  ASSERT_TRUE(store_
                  ->Scan(storage::kUsagePacks, "",
                         [&](auto, auto) {
                           ++packs;
                           return true;
                         })
                  .ok());
  EXPECT_EQ(packs, 0);
}

INSTANTIATE_TEST_SUITE_P(Stores, UsageStoresTest,
                         ::testing::Values("memory", "rocksdb", "etcd"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace joule::billing
