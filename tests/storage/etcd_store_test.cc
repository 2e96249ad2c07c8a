// EtcdStore and LeaderElection against real etcd processes: fencing, limits,
// failover between members, election. The Store conformance cases are in
// store_test.cc.
#include "storage/etcd_store.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "storage/leader_election.h"
#include "storage/revision_compactor.h"
#include "tests/storage/etcd_fixture.h"

namespace joule::storage {
namespace {

using joule::testing::EtcdCluster;

class EtcdTest : public ::testing::Test {
 protected:
  void StartCluster(int members) {
    if (joule::testing::EtcdBinary().empty()) {
      GTEST_SKIP() << "etcd is not installed (Debian: apt-get install "
                      "etcd-server, or set JOULE_ETCD_BIN): skipped";
    }
    EtcdCluster::Options o;
    o.members = members;
    o.max_txn_ops = 128;  // etcd's defaults
    o.max_request_bytes = 1536 * 1024;
    etcd_ = std::make_unique<EtcdCluster>(o);
    absl::Status started = etcd_->Start();
    ASSERT_TRUE(started.ok()) << started;
    client_ = NewClient();
  }
  std::unique_ptr<EtcdClient> NewClient() {
    EtcdClientOptions o;
    o.endpoints = etcd_->EndpointList();
    o.timeout = absl::Seconds(2);
    auto c = EtcdClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdTest, ClientRejectsBadOptions) {
  EXPECT_EQ(EtcdClient::Create({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EtcdClientOptions o;
  o.endpoints = {"https://127.0.0.1:1"};
  o.ca_file = "/nonexistent/ca.pem";
  auto c = EtcdClient::Create(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("--etcd-ca"), std::string::npos);
}

TEST(PrefixEndTest, Table) {
  EXPECT_EQ(PrefixEnd("/joule/jobs/"), "/joule/jobs0");  // '/' + 1 = '0'
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST_F(EtcdTest, OverLimitBatchIsRefusedWholeBeforeSending) {
  StartCluster(1);
  EtcdStore store(client_.get(), {});  // etcd's default limits
  WriteBatch b;
  for (int i = 0; i < 129; ++i) b.Put(kJobs, absl::StrCat("j", i), "v");
  absl::Status s = store.Write(b, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("max_txn_ops 128"), std::string::npos) << s;
  EXPECT_FALSE(store.Get(kJobs, "j0")->has_value());
  // 2 MiB value: over 1.5 MiB.
  s = store.Put(kStatements, "big", std::string(2 << 20, 'x'));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_FALSE(store.deposed());
  // etcd itself refuses what passes our check with wrong limits: same code.
  EtcdStore lax(client_.get(),
                {.max_txn_ops = 100000, .max_request_bytes = 100 << 20});
  s = lax.Write(b, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_FALSE(store.Get(kJobs, "j0")->has_value());
}

// Group commit: while member 0 is stopped, the first Write is in flight and
// 8 more queue; after SIGCONT the 8 go out as ONE fenced Txn (2 Txns for 9
// batches), each batch's keys are there, and the key all of them write ends
// with one of their values (the last of the group, in queue order).
TEST_F(EtcdTest, ConcurrentWritesShareOneTxn) {
  StartCluster(1);
  EtcdClientOptions co;
  co.endpoints = etcd_->EndpointList();
  co.timeout = absl::Seconds(30);  // the stopped member must not time out
  auto slow = EtcdClient::Create(co);
  ASSERT_TRUE(slow.ok()) << slow.status();
  LeaderElection a((*slow).get(), {.key = "/joule/leader", .value = "a:1"});
  auto rev = a.Campaign();
  ASSERT_TRUE(rev.ok()) << rev.status();
  EtcdStore store((*slow).get(), {});
  store.SetFence("/joule/leader", *rev);

  etcd_->Kill(0, SIGSTOP);
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(9);
  auto write = [&](int i) {
    WriteBatch b;
    b.Put(kJobs, absl::StrCat("j", i), absl::StrCat("v", i));
    b.Put(kMeta, "shared", absl::StrCat("w", i));
    results[i] = store.Write(b, {.sync = true});
  };
  writers.emplace_back(write, 0);
  while (store.queued() < 1) absl::SleepFor(absl::Milliseconds(1));
  // Writer 0 leads and waits on etcd; the others queue behind it.
  absl::SleepFor(absl::Milliseconds(50));
  for (int i = 1; i < 9; ++i) writers.emplace_back(write, i);
  while (store.queued() < 9) absl::SleepFor(absl::Milliseconds(1));
  etcd_->Kill(0, SIGCONT);
  for (std::thread& t : writers) t.join();
  for (int i = 0; i < 9; ++i) {
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
    EXPECT_EQ(**store.Get(kJobs, absl::StrCat("j", i)), absl::StrCat("v", i));
  }
  EXPECT_EQ(store.batches_committed(), 9);
  EXPECT_EQ(store.txns_sent(), 2);  // writer 0 alone, then 1..8 together
  const std::string shared = **store.Get(kMeta, "shared");
  EXPECT_NE(shared, "w0") << "the group of 1..8 came after writer 0";
  EXPECT_FALSE(store.deposed());

  // A deposed leader's group fails as a whole: nothing of it is written.
  a.Resign();
  LeaderElection b((*slow).get(), {.key = "/joule/leader", .value = "b:2"});
  ASSERT_TRUE(b.Campaign().ok());
  WriteBatch stale;
  stale.Put(kJobs, "j0", "stale");
  EXPECT_EQ(store.Write(stale, {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(**store.Get(kJobs, "j0"), "v0");
}

// RevisionCompactor: each Step compacts to the revision the previous Step
// saw; a read at a compacted revision then fails, the latest value stays.
TEST_F(EtcdTest, RevisionCompactorKeepsOneIntervalOfHistory) {
  StartCluster(1);
  EtcdStore store(client_.get(), {});
  ASSERT_TRUE(store.Put(kJobs, "j", "v1").ok());
  RevisionCompactor compactor(client_.get());
  auto first = compactor.Step();  // remembers the revision, compacts nothing
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 0);
  auto old_rev = client_->Status();
  ASSERT_TRUE(old_rev.ok());
  const int64_t v1_rev = old_rev->header().revision();
  ASSERT_TRUE(store.Put(kJobs, "j", "v2").ok());
  etcdserverpb::RangeRequest at_v1;
  at_v1.set_key(store.EtcdKey(kJobs, "j"));
  at_v1.set_revision(v1_rev);
  ASSERT_TRUE(client_->Range(at_v1).ok());  // history still there
  auto second = compactor.Step();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, v1_rev);
  ASSERT_TRUE(store.Put(kJobs, "j", "v3").ok());
  auto third = compactor.Step();  // compacts to the revision of v2
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_GT(*third, v1_rev);
  auto gone = client_->Range(at_v1);
  EXPECT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("compacted"), std::string::npos)
      << gone.status();
  EXPECT_EQ(**store.Get(kJobs, "j"), "v3");
}

TEST_F(EtcdTest, FencedWritesFailOnceTheLeaderKeyChanges) {
  StartCluster(1);
  LeaderElection a(client_.get(), {.key = "/joule/leader", .value = "a:1"});
  auto rev = a.Campaign();
  ASSERT_TRUE(rev.ok()) << rev.status();
  EtcdStore store(client_.get(), {});
  std::atomic<int> deposed_calls{0};
  store.set_on_deposed([&](const absl::Status&) { ++deposed_calls; });
  store.SetFence("/joule/leader", *rev);
  ASSERT_TRUE(store.Put(kJobs, "j1", "by a").ok());

  // a loses its key (resigns); b takes over.
  a.Resign();
  LeaderElection b(client_.get(), {.key = "/joule/leader", .value = "b:2"});
  ASSERT_TRUE(b.Campaign().ok());
  absl::Status s = store.Put(kJobs, "j1", "stale write by a");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(store.deposed());
  EXPECT_EQ(deposed_calls, 1);
  EXPECT_EQ(**store.Get(kJobs, "j1"), "by a");
  // Latched: refused without asking etcd.
  EXPECT_EQ(store.Put(kJobs, "j2", "x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store.Get(kJobs, "j2")->has_value());
}

TEST_F(EtcdTest, ElectionOneLeaderStandbyTakesOverOnResignAndExpiry) {
  StartCluster(1);
  absl::Notification a_lost;
  LeaderElection a(client_.get(),
                   {.key = "/e/leader",
                    .value = "a:1",
                    .ttl = absl::Seconds(2),
                    .on_lost = [&](const absl::Status&) { a_lost.Notify(); }});
  ASSERT_TRUE(a.Campaign().ok());
  EXPECT_TRUE(a.leading());

  LeaderElection b(
      client_.get(),
      {.key = "/e/leader", .value = "b:2", .ttl = absl::Seconds(2)});
  std::atomic<bool> b_won{false};
  std::thread tb([&] { b_won = b.Campaign().ok(); });
  // b waits and learns who leads.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(b_won);
  EXPECT_EQ(b.leader(), "a:1");
  a.Resign();  // the key goes with the lease
  tb.join();
  EXPECT_TRUE(b_won);
  EXPECT_EQ(b.leader(), "b:2");
  EXPECT_FALSE(a_lost.HasBeenNotified());  // resigning is not losing

  // c waits; b's lease expires when its keep-alives stop (like a kill).
  LeaderElection c(
      client_.get(),
      {.key = "/e/leader", .value = "c:3", .ttl = absl::Seconds(2)});
  std::atomic<bool> c_won{false};
  std::thread tc([&] { c_won = c.Campaign().ok(); });
  etcd_->Kill(0, SIGSTOP);  // nobody can reach etcd for a while
  absl::SleepFor(absl::Milliseconds(2500));
  etcd_->Kill(0, SIGCONT);
  tc.join();
  EXPECT_TRUE(c_won);
  EXPECT_FALSE(b.leading());  // b noticed it could not renew within the TTL
}

// With polling as good as off (poll and recheck 1 h), only etcd's Watch can
// tell a waiting standby that the leader key went: on resignation, and on
// lease expiry when the leader stops renewing (as a killed jouled does).
// The 60 s waits bound a hang, not a speed: without the watch they fail.
TEST_F(EtcdTest, StandbyLearnsOfTheLeaderKeysDeletionByWatch) {
  StartCluster(1);
  auto opts = [](std::string value) {
    return LeaderElection::Options{.key = "/w/leader",
                                   .value = std::move(value),
                                   .ttl = absl::Seconds(2),
                                   .poll = absl::Hours(1),
                                   .watch = true,
                                   .watch_recheck = absl::Hours(1)};
  };
  auto a = std::make_unique<LeaderElection>(client_.get(), opts("a:1"));
  ASSERT_TRUE(a->Campaign().ok());
  auto b = std::make_unique<LeaderElection>(client_.get(), opts("b:2"));
  absl::Notification b_won;
  std::thread tb([&] {
    if (b->Campaign().ok()) b_won.Notify();
  });
  while (b->leader() != "a:1") absl::SleepFor(absl::Milliseconds(10));
  a->Resign();
  EXPECT_TRUE(b_won.WaitForNotificationWithTimeout(absl::Seconds(60)));
  if (!b_won.HasBeenNotified()) b->Cancel();
  tb.join();
  ASSERT_TRUE(b->leading());

  LeaderElection c(client_.get(), opts("c:3"));
  absl::Notification c_won;
  std::thread tc([&] {
    if (c.Campaign().ok()) c_won.Notify();
  });
  while (c.leader() != "b:2") absl::SleepFor(absl::Milliseconds(10));
  b.reset();  // keep-alives stop, the lease is not revoked: it expires
  EXPECT_TRUE(c_won.WaitForNotificationWithTimeout(absl::Seconds(60)));
  if (!c_won.HasBeenNotified()) c.Cancel();
  tc.join();
  EXPECT_TRUE(c.leading());
}

// With the watch off, the poll alone still finds the key gone.
TEST_F(EtcdTest, StandbyWithoutWatchPolls) {
  StartCluster(1);
  LeaderElection a(client_.get(), {.key = "/p/leader", .value = "a"});
  ASSERT_TRUE(a.Campaign().ok());
  LeaderElection b(client_.get(),
                   {.key = "/p/leader", .value = "b", .watch = false});
  std::thread t([&] {
    while (b.leader() != "a") absl::SleepFor(absl::Milliseconds(10));
    a.Resign();
  });
  EXPECT_TRUE(b.Campaign().ok());
  t.join();
  EXPECT_TRUE(b.leading());
}

TEST_F(EtcdTest, CampaignCancels) {
  StartCluster(1);
  LeaderElection a(client_.get(), {.key = "/c/leader", .value = "a"});
  ASSERT_TRUE(a.Campaign().ok());
  LeaderElection b(client_.get(), {.key = "/c/leader", .value = "b"});
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(300));
    b.Cancel();
  });
  EXPECT_EQ(b.Campaign().status().code(), absl::StatusCode::kCancelled);
  t.join();
}

TEST_F(EtcdTest, ThreeMembersOneDownGoesOnTwoDownRefusesRestoreGoesOn) {
  StartCluster(3);
  EtcdStore store(client_.get(), {});
  ASSERT_TRUE(store.Put(kJobs, "before", "1").ok());
  // Kill the member the client talks to: the next calls use the others.
  const std::string first = client_->current_endpoint();
  int victim = 0;
  for (int i = 0; i < 3; ++i) {
    if (etcd_->ClientUrl(i).ends_with(first)) victim = i;
  }
  etcd_->Kill(victim, SIGKILL);
  absl::Status s;
  for (int i = 0; i < 20; ++i) {  // an in-flight call may fail once
    s = store.Put(kJobs, "one-down", "2");
    if (s.ok()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(**store.Get(kJobs, "before"), "1");

  // Two down: no quorum; writes fail UNAVAILABLE and leave nothing.
  const int second = (victim + 1) % 3;
  etcd_->Kill(second, SIGKILL);
  // Once the last member has noticed it has no raft leader, it refuses at
  // once ("no leader", thanks to the hasleader metadata): certainly not
  // applied, so not "outcome unknown".
  absl::SleepFor(absl::Seconds(2));
  EtcdStore fresh(client_.get(), {});  // not latched by earlier failures
  WriteBatch b;
  b.Put(kJobs, "no-quorum-1", "x");
  b.Put(kUsage, "no-quorum-2", "y");
  for (int i = 0; i < 10; ++i) {
    s = fresh.Write(b, {});
    if (!IsOutcomeUnknown(s)) break;
    fresh.ClearFence();
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_FALSE(IsOutcomeUnknown(s)) << s;

  // Restore: it goes on, and the refused batch is not there.
  ASSERT_TRUE(etcd_->Restart(victim).ok());
  ASSERT_TRUE(etcd_->Restart(second).ok());
  EtcdStore after(client_.get(), {});
  for (int i = 0; i < 100; ++i) {
    s = after.Put(kJobs, "restored", "3");
    if (s.ok()) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(after.Get(kJobs, "no-quorum-1")->has_value());
  EXPECT_FALSE(after.Get(kUsage, "no-quorum-2")->has_value());
  EXPECT_EQ(**after.Get(kJobs, "one-down"), "2");
}

TEST(EtcdTlsTest, ClientCertificateAuthOverHttps) {
  if (joule::testing::EtcdBinary().empty()) {
    GTEST_SKIP() << "etcd is not installed (Debian: apt-get install "
                    "etcd-server, or set JOULE_ETCD_BIN): skipped";
  }
  const std::string dir = ::testing::TempDir() + "/joule-etcd-tls";
  std::filesystem::create_directories(dir);
  if (!joule::testing::MakeTestCerts(dir)) {
    GTEST_SKIP() << "openssl could not make test certificates: skipped";
  }
  EtcdCluster::Options o;
  o.tls_dir = dir;
  EtcdCluster etcd(o);
  absl::Status started = etcd.Start();
  ASSERT_TRUE(started.ok()) << started;

  EtcdClientOptions co;
  co.endpoints = etcd.EndpointList();  // https://
  co.ca_file = dir + "/ca.pem";
  co.cert_file = dir + "/client.pem";
  co.key_file = dir + "/client.key";
  auto client = EtcdClient::Create(co);
  ASSERT_TRUE(client.ok()) << client.status();
  EtcdStore store(client->get(), {});
  ASSERT_TRUE(store.Put(kJobs, "j1", "over tls").ok());
  EXPECT_EQ(**store.Get(kJobs, "j1"), "over tls");

  // Without a client certificate the member refuses the handshake.
  co.cert_file.clear();
  co.key_file.clear();
  co.timeout = absl::Seconds(1);
  auto anon = EtcdClient::Create(co);
  ASSERT_TRUE(anon.ok());
  EtcdStore anon_store(anon->get(), {});
  EXPECT_FALSE(anon_store.Get(kJobs, "j1").ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace joule::storage
