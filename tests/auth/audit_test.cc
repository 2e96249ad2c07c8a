#include "auth/audit.h"

#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::auth {
namespace {

// A store whose writes can be made to fail.
class FlakyStore final : public storage::Store {
 public:
  absl::Status Write(const storage::WriteBatch& b,
                     const storage::WriteOptions& o) override {
    if (fail) return absl::UnavailableError("disk");
    return base.Write(b, o);
  }
  absl::StatusOr<std::optional<std::string>> Get(std::string_view t,
                                                 std::string_view k) override {
    return base.Get(t, k);
  }
  absl::Status Scan(std::string_view t, std::string_view p,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override {
    return base.Scan(t, p, fn);
  }
  storage::MemoryStore base;
  bool fail = false;
};

class AuditTest : public ::testing::Test {
 protected:
  AuditTest() : log_(&store_, &clock_, "b007"), audited_(&store_) {}
  v1::AuditRecord Rec(std::string method) {
    v1::AuditRecord r;
    r.set_principal("jt_x");
    r.set_method(std::move(method));
    return r;
  }
  std::vector<v1::AuditRecord> All() {
    auto r = log_.List(v1::ListAuditRequest());
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::vector<v1::AuditRecord>();
  }
  FlakyStore store_;
  FakeClock clock_;
  AuditLog log_;
  AuditingStore audited_;
};

TEST_F(AuditTest, RecordJoinsTheFirstSyncedWriteOfTheCall) {
  {
    AuditScope scope(&log_, Rec("/m/Effect"));
    // An unsynced write does not take it; the synced one does.
    ASSERT_TRUE(audited_.Put("tenants", "a", "1", {.sync = false}).ok());
    EXPECT_TRUE(All().empty());
    ASSERT_TRUE(audited_.Put("tenants", "b", "2", {.sync = true}).ok());
    EXPECT_EQ(All().size(), 1u);
    ASSERT_TRUE(audited_.Put("tenants", "c", "3", {.sync = true}).ok());
    scope.SetOutcome(absl::OkStatus());
  }
  const auto all = All();
  ASSERT_EQ(all.size(), 1u);  // once, with "ok"
  EXPECT_EQ(all[0].outcome(), "ok");
  EXPECT_EQ(all[0].method(), "/m/Effect");
}

TEST_F(AuditTest, FailedWriteLeavesNeitherEffectNorOkRecord) {
  {
    AuditScope scope(&log_, Rec("/m/Fails"));
    store_.fail = true;
    EXPECT_FALSE(audited_.Put("tenants", "a", "1").ok());
    store_.fail = false;
    scope.SetOutcome(absl::UnavailableError("disk"));
  }
  auto v = store_.Get("tenants", "a");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->has_value());
  const auto all = All();
  ASSERT_EQ(all.size(), 1u);  // written on its own, with the error
  EXPECT_EQ(all[0].outcome(), "UNAVAILABLE: disk");
}

TEST_F(AuditTest, CallWithoutWriteIsRecordedWithItsOutcome) {
  {
    AuditScope scope(&log_, Rec("/m/Denied"));
    scope.SetOutcome(absl::PermissionDeniedError("no"));
  }
  {
    AuditScope scope(&log_, Rec("/m/Duplicate"));
    scope.SetOutcome(absl::OkStatus());  // idempotent retry: no effect
  }
  const auto all = All();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].outcome(), "PERMISSION_DENIED: no");
  EXPECT_EQ(all[1].outcome(), "ok");
}

TEST_F(AuditTest, ListFiltersBySinceAndPrincipalAndKeepsTheLatest) {
  for (int i = 0; i < 5; ++i) {
    v1::AuditRecord r = Rec("/m/X");
    r.set_principal(i % 2 == 0 ? "even" : "odd");
    ASSERT_TRUE(log_.Write(r).ok());
    clock_.Advance(absl::Minutes(10));
  }
  // Written at t0, +10m, ..., +40m; now is +50m.
  v1::ListAuditRequest req;
  req.mutable_since()->set_seconds(25 * 60);  // from +25m: the last two
  EXPECT_EQ(log_.List(req)->size(), 2u);
  req.Clear();
  req.set_principal("even");
  EXPECT_EQ(log_.List(req)->size(), 3u);
  req.set_limit(1);
  auto one = log_.List(req);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->at(0).seq(), 1u);
  req.Clear();
  req.set_limit(200000);
  EXPECT_EQ(log_.List(req).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace joule::auth
