// RecordUsage on a store that limits ops per write (as etcd does): a big
// batch is recorded in parts, each atomic and self-contained, so a failure
// between parts followed by a re-run still counts every event exactly once.
#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "billing/ledger.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::billing {
namespace {

class Tenants : public TenantDirectory {
 public:
  bool Exists(std::string_view t) const override { return t == "acme"; }
};

// A MemoryStore that takes at most `max_ops` ops per write, refuses bigger
// batches like EtcdStore does, and can fail the n-th write (a crash).
class LimitedStore : public storage::Store {
 public:
  explicit LimitedStore(int64_t max_ops) : max_ops_(max_ops) {}
  absl::Status Write(const storage::WriteBatch& b,
                     const storage::WriteOptions& o) override {
    if (static_cast<int64_t>(b.size()) > max_ops_) {
      return absl::ResourceExhaustedError("too many ops");
    }
    if (++writes == fail_write) return absl::UnavailableError("crash");
    return inner.Write(b, o);
  }
  absl::StatusOr<std::optional<std::string>> Get(std::string_view t,
                                                 std::string_view k) override {
    return inner.Get(t, k);
  }
  absl::Status Scan(std::string_view t, std::string_view p,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override {
    return inner.Scan(t, p, fn);
  }
  int64_t max_batch_ops() const override { return max_ops_; }

  storage::MemoryStore inner;
  int writes = 0;
  int fail_write = -1;

 private:
  const int64_t max_ops_;
};

absl::Time T(const char* s) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, s, &t, &err)) << err;
  return t;
}

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

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

TEST(LedgerPartsTest, BigBatchIsWrittenInPartsUnderTheLimit) {
  LimitedStore store(12);  // 12 ops = 4 events (3 ops each at most) per part
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  Tenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  const int before = store.writes;
  auto r = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 10u);
  EXPECT_EQ(store.writes - before, 3);  // 4 + 4 + 2 events
  auto st = ledger.GetStatement("acme", "2025-12");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->total_cents(), 1000);  // 10 x $1
}

TEST(LedgerPartsTest, CrashBetweenPartsThenReRunCountsEachEventOnce) {
  LimitedStore store(12);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  Tenants tenants;
  {
    Ledger ledger(&store, &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger.SetPrice(Price()).ok());
    store.fail_write = store.writes + 2;  // the second part fails
    auto r = ledger.RecordUsage(Batch(10), "operator");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  }
  // A new jouled (the standby) loads what is in the store and the client
  // re-sends the whole batch.
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  auto r = ledger.RecordUsage(Batch(10), "operator");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates(), 4u);  // the first part was durable
  EXPECT_EQ(r->accepted(), 6u);
  auto st = ledger.GetStatement("acme", "2025-12");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->total_cents(), 1000);  // 10 x $1, none twice
}

TEST(LedgerPartsTest, ErrorsNameTheIndexInTheWholeBatch) {
  LimitedStore store(12);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  Tenants tenants;
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  ASSERT_TRUE(ledger.SetPrice(Price()).ok());
  std::vector<v1::UsageEvent> b = Batch(10);
  b[9].set_tenant("nobody");  // in the third part, index 1 there
  auto r = ledger.RecordUsage(b, "operator");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message().substr(0, 17), "events[9].tenant:")
      << r.status();
}

TEST(UsageDedupWindowTest, OldEventsRefusedAndOldRecordsCompacted) {
  LimitedStore store(12);
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  Tenants tenants;
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
