// Retention by age (docs/ha.md#sizing): the ClusterManager, the Ledger and
// the Retention pass over one store, with a fake clock, over several rounds
// and across restarts; the same test over memory, RocksDB and etcd (real
// etcd processes). Also the pure selection (ExpiredJobGroups), table-driven.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "billing/ledger.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "daemon/job_retention.h"
#include "daemon/retention.h"
#include "gtest/gtest.h"
#include "tests/storage/etcd_fixture.h"
#include "tests/storage/test_stores.h"

namespace joule::daemon {
namespace {

absl::Time Day(int month, int day, int hour = 0) {
  return absl::FromCivil(absl::CivilHour(2026, month, day, hour),
                         absl::UTCTimeZone());
}

// ------------------------------------------------- ExpiredJobGroups ----

v1::Job MakeJob(const std::string& id, v1::JobState state, absl::Time ended,
                std::string array = "", std::vector<std::string> after = {}) {
  v1::Job j;
  j.set_id(id);
  j.set_state(state);
  j.set_array_id(array);
  for (auto& a : after) j.mutable_spec()->add_after(a);
  v1::JobTransition* t = j.add_history();
  t->set_state(state);
  *t->mutable_time() = ToProtoTime(ended);
  return j;
}

TEST(ExpiredJobGroupsTest, Table) {
  const absl::Time cutoff = Day(4, 1);
  const absl::Time old = Day(1, 1), young = Day(5, 1);
  struct Case {
    std::string name;
    std::vector<v1::Job> jobs;
    std::set<std::string> unsettled;
    std::vector<std::vector<std::string>> want;
  };
  const std::vector<Case> cases = {
      {"old finished job goes",
       {MakeJob("a", v1::JOB_STATE_SUCCEEDED, old)},
       {},
       {{"a"}}},
      {"young finished job stays (ended after the cutoff)",
       {MakeJob("a", v1::JOB_STATE_FAILED, young)},
       {},
       {}},
      {"ended exactly at the cutoff stays (strictly before)",
       {MakeJob("a", v1::JOB_STATE_FAILED, cutoff)},
       {},
       {}},
      {"active job stays however old",
       {MakeJob("a", v1::JOB_STATE_RUNNING, old),
        MakeJob("b", v1::JOB_STATE_PENDING, old)},
       {},
       {}},
      {"unsettled billing stays",
       {MakeJob("a", v1::JOB_STATE_SUCCEEDED, old),
        MakeJob("b", v1::JOB_STATE_SUCCEEDED, old)},
       {"a"},
       {{"b"}}},
      {"a pending job's dependency stays; a finished one's does not",
       {MakeJob("a", v1::JOB_STATE_SUCCEEDED, old),
        MakeJob("b", v1::JOB_STATE_SUCCEEDED, old),
        MakeJob("c", v1::JOB_STATE_PENDING, old, "", {"a"}),
        MakeJob("d", v1::JOB_STATE_CANCELLED, old, "", {"b"})},
       {},
       {{"b"}, {"d"}}},
      {"array: all tasks together",
       {MakeJob("x_0", v1::JOB_STATE_SUCCEEDED, old, "x"),
        MakeJob("x_1", v1::JOB_STATE_FAILED, old, "x")},
       {},
       {{"x_0", "x_1"}}},
      {"array with a live task stays whole",
       {MakeJob("x_0", v1::JOB_STATE_SUCCEEDED, old, "x"),
        MakeJob("x_1", v1::JOB_STATE_RUNNING, old, "x"),
        MakeJob("x_2", v1::JOB_STATE_SUCCEEDED, old, "x")},
       {},
       {}},
      {"array with one young or unsettled task stays whole",
       {MakeJob("x_0", v1::JOB_STATE_SUCCEEDED, old, "x"),
        MakeJob("x_1", v1::JOB_STATE_SUCCEEDED, young, "x"),
        MakeJob("y_0", v1::JOB_STATE_SUCCEEDED, old, "y"),
        MakeJob("y_1", v1::JOB_STATE_SUCCEEDED, old, "y")},
       {"y_0"},
       {}},
  };
  for (const Case& c : cases) {
    std::map<std::string, const v1::Job*> view;
    for (const v1::Job& j : c.jobs) view[j.id()] = &j;
    auto got = ExpiredJobGroups(view, cutoff, [&](const v1::Job& j) {
      return !c.unsettled.contains(j.id());
    });
    EXPECT_EQ(got, c.want) << c.name;
  }
}

// ------------------------------------------- daemon over each store ----

class Tenants : public billing::TenantDirectory {
 public:
  bool Exists(std::string_view t) const override { return t == "acme"; }
};

// Says it takes at most 2 ops per write, and refuses bigger batches of
// deletes (the retention pass's writes), so the pass must split them. Other
// writes (the ledger's finalization) pass.
class SmallBatches : public storage::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  absl::Status Write(const storage::WriteBatch& b,
                     const storage::WriteOptions& o) override {
    bool deletes_only = true;
    for (const auto& op : b.ops()) deletes_only &= !op.value.has_value();
    if (deletes_only && b.size() > 2) {
      return absl::ResourceExhaustedError("more than 2 deletes in a write");
    }
    return ForwardingStore::Write(b, o);
  }
  int64_t max_batch_ops() const override { return 2; }
};

// The store kinds of tests/storage/test_stores.h: "memory", "rocksdb",
// "etcd" (one real etcd member per test binary).
class RetentionDaemonTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "etcd" && joule::testing::EtcdBinary().empty()) {
      GTEST_SKIP() << "etcd is not installed: skipped";
    }
    auto s = joule::testing::OpenTestStore(GetParam());
    ASSERT_TRUE(s.ok()) << s.status();
    test_store_ = std::move(*s);
    store_ = std::make_unique<SmallBatches>(test_store_.get());
  }
  void TearDown() override { Close(); }

  // A jouled starting: ledger and manager load the store.
  void StartDaemon() {
    ledger_ =
        std::make_unique<billing::Ledger>(store_.get(), &clock_, &tenants_);
    ASSERT_TRUE(ledger_->Load().ok());
    ClusterManagerOptions o;
    o.config = config::DefaultClusterConfig();
    o.store = store_.get();
    o.clock = &clock_;
    manager_ = std::make_unique<ClusterManager>(std::move(o));
    ASSERT_TRUE(manager_->Load().ok());
    retention_ = std::make_unique<Retention>(
        manager_.get(), ledger_.get(), &clock_,
        RetentionOptions{.finished_jobs = absl::Hours(24 * 90),
                         .events = absl::Hours(24 * 35)});
  }
  void StopDaemon() {
    retention_.reset();
    manager_.reset();
    ledger_.reset();
  }
  // (Re)opens the store the way a restarted jouled does.
  void Restart() {
    StopDaemon();
    store_.reset();
    ASSERT_TRUE(test_store_.Reopen().ok());
    store_ = std::make_unique<SmallBatches>(test_store_.get());
    StartDaemon();
  }
  void Close() {
    StopDaemon();
    store_.reset();
    ASSERT_TRUE(test_store_.Close().ok());
  }

  // A finished or pending job record written straight to the store, as a
  // jouled long gone left it; a job that ran has attempt 1 from `ran`
  // for an hour, and its usage is recorded when `rated`.
  void PutJob(const std::string& id, v1::JobState state, absl::Time at,
              bool ran, std::string array = "", std::string request_id = "",
              std::vector<std::string> after = {}) {
    v1::Job j =
        MakeJob(id, state, at + (ran ? absl::Hours(1) : absl::ZeroDuration()),
                array, after);
    j.mutable_spec()->set_tenant("acme");
    j.mutable_spec()->set_gpus_per_node(1);
    j.set_request_id(request_id);
    j.set_held(state == v1::JOB_STATE_PENDING);
    *j.mutable_submit_time() = ToProtoTime(at);
    if (ran) {
      v1::JobAttempt* a = j.add_attempts();
      a->set_attempt(1);
      a->set_gpu_model("H100");
      *a->mutable_start_time() = ToProtoTime(at);
      *a->mutable_end_time() = ToProtoTime(at + absl::Hours(1));
      j.set_attempt(1);
    }
    ASSERT_TRUE(store_->Put(storage::kJobs, id, j.SerializeAsString()).ok());
    if (!request_id.empty() && (array.empty() || absl::EndsWith(id, "_0"))) {
      ASSERT_TRUE(
          store_->Put(storage::kJobsIdem, "acme/" + request_id, "r").ok());
    }
  }
  void Rate(const std::string& id, absl::Time at) {
    billing::JobUsage u;
    u.tenant = "acme";
    u.job_id = id;
    u.attempt = 1;
    u.gpu_model = "H100";
    u.service_class = v1::SERVICE_CLASS_ON_DEMAND;
    u.gpus = 1;
    u.start = at;
    u.end = at + absl::Hours(1);
    ASSERT_TRUE(ledger_->RecordJobUsage(u).ok());
  }
  void PutEvent(uint64_t seq, absl::Time at) {
    v1::Event e;
    e.set_seq(seq);
    *e.mutable_time() = ToProtoTime(at);
    ASSERT_TRUE(store_
                    ->Put(storage::kEvents, absl::StrFormat("%016x", seq),
                          e.SerializeAsString())
                    .ok());
  }
  // Job ids in the store and, separately, in the manager's memory.
  std::set<std::string> StoredJobs() {
    std::set<std::string> ids;
    EXPECT_TRUE(store_
                    ->Scan(storage::kJobs, "",
                           [&](auto k, auto) {
                             ids.emplace(k);
                             return true;
                           })
                    .ok());
    return ids;
  }
  std::set<std::string> KnownJobs() {
    std::set<std::string> ids;
    for (const std::string& id : StoredJobs()) ids.insert(id);
    for (const std::string id :
         {"job-000001", "job-000002", "job-000003", "job-000005", "job-000006",
          "job-000007_0", "job-000007_1", "job-000009"}) {
      if (manager_->GetJob(id, "").ok()) {
        ids.insert(id);
      } else {
        ids.erase(id);  // in the store but not in memory shows as missing
      }
    }
    return ids;
  }
  int64_t StoredEvents() {
    int64_t n = 0;
    EXPECT_TRUE(store_
                    ->Scan(storage::kEvents, "",
                           [&](auto, auto) {
                             ++n;
                             return true;
                           })
                    .ok());
    return n;
  }
  bool HasIdem(const std::string& key) {
    auto v = store_->Get(storage::kJobsIdem, key);
    return v.ok() && v->has_value();
  }
  Retention::Result Pass() {
    auto r = retention_->RunOnce();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : Retention::Result{};
  }

  FakeClock clock_{Day(1, 1)};
  Tenants tenants_;
  joule::testing::TestStore test_store_;
  std::unique_ptr<SmallBatches> store_;
  std::unique_ptr<billing::Ledger> ledger_;
  std::unique_ptr<ClusterManager> manager_;
  std::unique_ptr<Retention> retention_;
};

TEST_P(RetentionDaemonTest, OldJobsAndEventsGoOnlyWhenNothingNeedsThem) {
  // The state a jouled left (jobs 90-day retention, events 35-day):
  //   1 succeeded Jan 10, rated (January)           -> goes once Jan is final
  //   2 succeeded Feb 5, rated (February)            -> goes once Feb is final
  //   3 cancelled pending Jan 10, request r3         -> goes, with acme/r3
  //   5 succeeded Jan 10, rated, job 6 waits for it  -> stays while 6 lives
  //   6 pending (held), after job 5
  //   7 array: _0 succeeded Jan 10 rated, _1 pending -> stays whole while _1
  //     lives; request "arr"
  //   9 succeeded Jan 10, usage never rated          -> stays
  // Events on Jan 5, Mar 1, May 1.
  PutJob("job-000001", v1::JOB_STATE_SUCCEEDED, Day(1, 10, 10), true);
  PutJob("job-000002", v1::JOB_STATE_SUCCEEDED, Day(2, 5, 10), true);
  PutJob("job-000003", v1::JOB_STATE_CANCELLED, Day(1, 10), false, "", "r3");
  PutJob("job-000005", v1::JOB_STATE_SUCCEEDED, Day(1, 10, 10), true);
  PutJob("job-000006", v1::JOB_STATE_PENDING, Day(1, 10), false, "", "",
         {"job-000005"});
  PutJob("job-000007_0", v1::JOB_STATE_SUCCEEDED, Day(1, 10, 10), true,
         "job-000007", "arr");
  PutJob("job-000007_1", v1::JOB_STATE_PENDING, Day(1, 10), false, "job-000007",
         "arr");
  PutJob("job-000009", v1::JOB_STATE_SUCCEEDED, Day(1, 10, 10), true);
  PutEvent(1, Day(1, 5));
  PutEvent(2, Day(3, 1));
  PutEvent(3, Day(5, 1));
  clock_.Set(Day(2, 15));
  StartDaemon();
  v1::Price price;  // H100 on-demand $2/GPU-hour from Jan 1
  price.mutable_gpu_hour()->set_gpu_model("H100");
  price.mutable_gpu_hour()->set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
  price.mutable_gpu_hour()->set_price("2.00");
  *price.mutable_effective_from() = ToProtoTime(Day(1, 1));
  auto set = ledger_->SetPrice(price);
  ASSERT_TRUE(set.ok()) << set.status();
  for (const char* id : {"job-000001", "job-000005", "job-000007_0"}) {
    Rate(id, Day(1, 10, 10));
  }
  Rate("job-000002", Day(2, 5, 10));
  const std::set<std::string> all = {
      "job-000001", "job-000002",   "job-000003",   "job-000005",
      "job-000006", "job-000007_0", "job-000007_1", "job-000009"};

  // Round 0, Feb 15: job cutoff Nov 17 (nothing that old); event cutoff
  // Jan 11: the Jan 5 event goes.
  Retention::Result r = Pass();
  EXPECT_EQ(r.jobs, 0);
  EXPECT_EQ(r.events, 1);
  EXPECT_EQ(KnownJobs(), all);

  // Round 1, Apr 15, January finalized: job cutoff Jan 15 → jobs 1 and 3
  // (with acme/r3); 5 is needed by 6, the array by its pending task, 9 is
  // not rated, 2 ended after the cutoff. Event cutoff Mar 11: Mar 1 goes.
  clock_.Set(Day(4, 15));
  auto fin = ledger_->FinalizePeriod("2026-01");
  ASSERT_TRUE(fin.ok()) << fin.status();
  r = Pass();
  EXPECT_EQ(r.jobs, 2);
  EXPECT_EQ(r.events, 1);
  std::set<std::string> left = all;
  left.erase("job-000001");
  left.erase("job-000003");
  EXPECT_EQ(KnownJobs(), left);
  EXPECT_FALSE(HasIdem("acme/r3"));
  EXPECT_TRUE(HasIdem("acme/arr"));

  // Restart: the same state is loaded; a pass deletes nothing more.
  Restart();
  EXPECT_EQ(KnownJobs(), left);
  r = Pass();
  EXPECT_EQ(r.jobs, 0);
  EXPECT_EQ(r.events, 0);

  // Round 2, May 20: cutoff Feb 19; job 2 is old, but February is open.
  clock_.Set(Day(5, 20));
  EXPECT_EQ(Pass().jobs, 0);
  fin = ledger_->FinalizePeriod("2026-02");
  ASSERT_TRUE(fin.ok()) << fin.status();
  EXPECT_EQ(Pass().jobs, 1);  // job 2
  left.erase("job-000002");
  EXPECT_EQ(KnownJobs(), left);
  // Job 6 and the array's last task are cancelled now (May 20): job 5 is no
  // longer needed; 6 and the array are young.
  for (const char* id : {"job-000006", "job-000007_1"}) {
    v1::CancelJobRequest c;
    c.set_id(id);
    ASSERT_TRUE(manager_->CancelJob(c, "").ok()) << id;
  }
  r = Pass();
  EXPECT_EQ(r.jobs, 1);  // job 5
  left.erase("job-000005");
  EXPECT_EQ(KnownJobs(), left);

  // Round 3, Aug 20: cutoff May 22: job 6 and the whole array (and
  // acme/arr) go; job 9 stays (never rated). Event cutoff Jul 16: the May 1
  // event and the cancellations' events go: nothing is left.
  clock_.Set(Day(8, 20));
  r = Pass();
  EXPECT_EQ(r.jobs, 3);
  EXPECT_GE(r.events, 1);
  EXPECT_EQ(StoredEvents(), 0);
  EXPECT_FALSE(HasIdem("acme/arr"));
  const std::set<std::string> only9 = {"job-000009"};
  EXPECT_EQ(KnownJobs(), only9);

  // Restart: still only job 9.
  Restart();
  EXPECT_EQ(StoredJobs(), only9);
  EXPECT_EQ(KnownJobs(), only9);
  EXPECT_EQ(Pass().jobs, 0);
}

INSTANTIATE_TEST_SUITE_P(Stores, RetentionDaemonTest,
                         ::testing::Values("memory", "rocksdb", "etcd"),
                         [](const auto& info) {
                           if (info.param == "memory") return "Memory";
                           if (info.param == "rocksdb") return "RocksDb";
                           return "Etcd";
                         });

}  // namespace
}  // namespace joule::daemon
