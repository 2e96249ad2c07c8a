// High availability on etcd, end to end: real etcd members, two jouled
// (--store etcd), agents and joulectl with several --server endpoints, all
// on loopback and started/stopped by pid. See docs/ha.md.
#include <signal.h>

#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "storage/etcd_client.h"
#include "tests/e2e/harness.h"
#include "tests/storage/etcd_fixture.h"

namespace joule::e2e {
namespace {

using joule::testing::EtcdCluster;

std::string Period() {
  return absl::FormatTime("%Y-%m", absl::Now(), absl::UTCTimeZone());
}

// `n` usage events of 1,000,000 input tokens each, one minute ago.
void WriteUsageCsv(const std::string& path, int n) {
  std::ofstream o(path);
  o << "timestamp,tenant,model,requests,input_tokens,output_tokens,"
       "idempotency_key\n";
  const std::string t =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now() - absl::Minutes(1),
                       absl::UTCTimeZone());
  for (int i = 0; i < n; ++i) {
    o << t << ",acme,llama,1,1000000,0,ev-" << i << "\n";
  }
}

// etcd members + two jouled + the Cluster (agents, joulectl) pointed at
// both jouled.
class HaE2E : public ::testing::Test {
 protected:
  void Start(int members) {
    if (joule::testing::EtcdBinary().empty()) {
      GTEST_SKIP() << "etcd is not installed (Debian: apt-get install "
                      "etcd-server, or set JOULE_ETCD_BIN): HA tests skipped";
    }
    EtcdCluster::Options eo;
    eo.members = members;
    etcd_ = std::make_unique<EtcdCluster>(eo);
    absl::Status s = etcd_->Start();
    ASSERT_TRUE(s.ok()) << s;
    ports_ = {FreePort(), FreePort()};
    Cluster::Options co;
    co.servers = absl::StrCat(Addr(0), ",", Addr(1));
    c_ = std::make_unique<Cluster>(co);
    auto client = storage::EtcdClient::Create(
        {.endpoints = etcd_->EndpointList(), .timeout = absl::Seconds(1)});
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
    StartJouled(0);
    ASSERT_TRUE(WaitFor([&] { return Leader() == 0; })) << Log(0);
    // The first leader, on an empty store, wrote the bootstrap token.
    const std::string token_file = c_->dir() + "/data-0/operator.token";
    ASSERT_TRUE(WaitFor([&] { return !ReadFile(token_file).empty(); }))
        << Log(0);
    c_->set_operator_token(ReadFile(token_file));
    // The token is written before jouled serves: ready when it answers (as
    // Cluster::StartDaemon waits), else the first call below can find no
    // one serving yet (exit 3).
    ASSERT_TRUE(WaitFor([&] { return Ctl({"tenant", "list"}).exit_code == 0; }))
        << Log(0);
    StartJouled(1);
    ASSERT_EQ(Ctl({"tenant", "create", "acme"}).exit_code, 0);
  }
  std::string Addr(int i) const {
    return absl::StrCat("127.0.0.1:", ports_[i]);
  }
  void StartJouled(int i) {
    jouled_[i] = std::make_unique<Process>(
        std::vector<std::string>{
            Bin("jouled"), "--store", "etcd", "--etcd-endpoints",
            etcd_->Endpoints(), "--listen", Addr(i), "--advertise", Addr(i),
            "--leader-lease-ttl", "3s", "--etcd-max-txn-ops", "10240",
            "--etcd-max-request-bytes", "10485760", "--heartbeat-timeout", "2s",
            "--report-interval", "200ms", "--data-dir",
            absl::StrCat(c_->dir(), "/data-", i), "--metrics-listen",
            "127.0.0.1:0", "--tls-cert", c_->pki() + "/server.crt",
            "--tls-key", c_->pki() + "/server.key", "--tls-ca",
            c_->pki() + "/ca.crt"},
        absl::StrCat(c_->dir(), "/jouled-", i, ".", ++starts_, ".log"));
  }
  std::string Log(int i) const { return jouled_[i] ? jouled_[i]->Log() : ""; }
  // Index of the jouled the leader key names; -1: none (or etcd down).
  int Leader() {
    etcdserverpb::RangeRequest r;
    r.set_key("/joule/leader");
    auto resp = client_->Range(r);
    if (!resp.ok() || resp->kvs_size() == 0) return -1;
    for (int i = 0; i < 2; ++i) {
      if (resp->kvs(0).value() == Addr(i)) return i;
    }
    return -1;
  }
  // joulectl against both jouled, with a short per-call timeout (a stopped
  // jouled accepts connections and never answers).
  CtlResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--timeout", "3s"});
    return c_->Ctl(args);
  }
  // joulectl against one jouled only.
  CtlResult CtlOne(int i, std::vector<std::string> args) {
    std::vector<std::string> argv = c_->CtlCommand();
    argv[2] = Addr(i);  // "--server" ADDR
    argv.insert(argv.end(), {"--timeout", "3s"});
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, absl::StrCat(c_->dir(), "/ctl-one.log"));
    CtlResult r;
    r.exit_code = p.Wait();
    r.err = p.Log();
    std::remove((c_->dir() + "/ctl-one.log").c_str());
    return r;
  }
  template <typename Msg>
  bool Json(std::vector<std::string> args, Msg* msg) {
    args.insert(args.begin(), {"--timeout", "3s", "-o", "json"});
    CtlResult r = c_->Ctl(args);
    if (r.exit_code != 0) return false;
    msg->Clear();
    return google::protobuf::util::JsonStringToMessage(r.out, msg).ok();
  }
  bool NodesReady(int n) {
    v1::ListNodesResponse r;
    if (!Json({"node", "list"}, &r) || r.nodes_size() != n) return false;
    for (const auto& node : r.nodes()) {
      if (node.state() != v1::NODE_STATE_READY) return false;
    }
    return true;
  }
  std::set<std::string> Tenants() {
    v1::ListTenantsResponse r;
    std::set<std::string> out;
    if (!Json({"tenant", "list"}, &r)) return {"<unreachable>"};
    for (const auto& t : r.tenants()) out.insert(t.name());
    return out;
  }

  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<storage::EtcdClient> client_;
  std::unique_ptr<Cluster> c_;
  std::vector<int> ports_;
  std::unique_ptr<Process> jouled_[2];
  int starts_ = 0;
};

TEST_F(HaE2E, KillLeaderStandbyTakesOverNothingAcknowledgedLost) {
  Start(3);
  ASSERT_EQ(
      Ctl({"price", "set", "inference", "--model", "llama", "--input", "0.60",
           "--output", "0.80", "--from", absl::StrCat(Period(), "-01")})
          .exit_code,
      0);
  c_->StartAgent("n1", {"--sim-gpus", "4"});
  c_->StartAgent("n2", {"--sim-gpus", "4"});
  ASSERT_TRUE(WaitFor([&] { return NodesReady(2); }));

  // Four running 2-GPU jobs fill both nodes; a fifth waits.
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    CtlResult r = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "2",
                       "--gpu-model", "H100", "--", "sleep", "300"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ids.push_back(std::string(absl::StripAsciiWhitespace(r.out)));
  }
  auto running = [&](int n) {
    int k = 0;
    for (const auto& id : ids) {
      v1::Job j;
      if (Json({"job", "show", id}, &j) && j.state() == v1::JOB_STATE_RUNNING) {
        ++k;
      }
    }
    return k == n;
  };
  ASSERT_TRUE(WaitFor([&] { return running(4); }));

  // A usage import in flight (20,000 events in calls of 200) when the
  // leader dies.
  const std::string csv = c_->dir() + "/usage.csv";
  WriteUsageCsv(csv, 20000);
  std::vector<std::string> import_argv = c_->CtlCommand();
  import_argv.insert(import_argv.end(),
                     {"usage", "import", csv, "--batch", "200"});
  Process import(import_argv, c_->dir() + "/import.log");
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time killed = absl::Now();
  jouled_[0]->Signal(SIGKILL);
  jouled_[0]->Wait();
  ASSERT_TRUE(WaitFor([&] { return Leader() == 1; })) << Log(1);
  // Reported, not asserted (no timing assertions in tests): bench/ha.sh
  // measures failover.
  fprintf(stderr, "standby leads %s after the kill\n",
          absl::FormatDuration(absl::Now() - killed).c_str());

  // Every acknowledged job is there; the running ones still run their
  // first attempt (not restarted), re-adopted from the agents'
  // registrations; no GPU is held twice.
  ASSERT_TRUE(WaitFor([&] { return NodesReady(2); })) << Log(1);
  ASSERT_TRUE(WaitFor([&] { return running(4); })) << Log(1);
  std::set<std::string> held;
  for (const auto& id : ids) {
    v1::Job j;
    ASSERT_TRUE(Json({"job", "show", id}, &j)) << id;
    if (j.state() != v1::JOB_STATE_RUNNING) {
      EXPECT_EQ(j.state(), v1::JOB_STATE_PENDING) << id;
      continue;
    }
    EXPECT_EQ(j.attempt(), 1u) << id;
    EXPECT_EQ(j.attempts_size(), 1) << id;
    for (const auto& a : j.allocations()) {
      for (uint32_t g : a.gpu_indices()) {
        EXPECT_TRUE(held.insert(absl::StrCat(a.node(), "/", g)).second)
            << a.node() << " GPU " << g << " held twice";
      }
    }
  }
  EXPECT_EQ(held.size(), 8u);

  // The import re-run completes and counts nothing twice: 20,000 events of
  // 1 M input tokens = 20,000 M tokens on the statement.
  const int import_exit = import.Wait();
  CtlResult rerun = Ctl({"usage", "import", csv, "--batch", "1000"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  int64_t fresh = 0, dup = 0;
  ASSERT_EQ(sscanf(rerun.out.c_str(), "new %ld, duplicate %ld", &fresh, &dup),
            2)
      << rerun.out;
  EXPECT_EQ(fresh + dup, 20000);
  // The kill interrupted the import: part of it was acknowledged before.
  EXPECT_NE(import_exit, 0) << import.Log();
  EXPECT_GT(dup, 0);
  EXPECT_GT(fresh, 0);
  v1::Statement st;
  ASSERT_TRUE(Json(
      {"billing", "statement", "--tenant", "acme", "--period", Period()}, &st));
  bool found = false;
  for (const auto& l : st.lines()) {
    if (l.pricing_model() == "inference" &&
        absl::StrContains(l.detail(), "input")) {
      EXPECT_EQ(l.quantity(), "20000") << l.detail();
      found = true;
    }
  }
  EXPECT_TRUE(found);
  // 20,000 M tokens x $0.60 = $12,000.00
  EXPECT_EQ(st.total_cents(), 1'200'000);
}

TEST_F(HaE2E, StoppedLeaderPastItsLeaseStepsDownAndWritesNothing) {
  Start(1);
  c_->StartAgent("n1", {"--sim-gpus", "2"});
  ASSERT_TRUE(WaitFor([&] { return NodesReady(1); }));
  ASSERT_EQ(Ctl({"tenant", "create", "before"}).exit_code, 0);
  jouled_[0]->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return Leader() == 1; })) << Log(1);
  ASSERT_TRUE(WaitFor([&] {
    return Ctl({"tenant", "create", "during"}).exit_code == 0;
  })) << Log(1);
  jouled_[0]->Signal(SIGCONT);
  // Its next write is refused (fenced, or it already stepped down).
  CtlResult w = CtlOne(0, {"tenant", "create", "stale"});
  EXPECT_NE(w.exit_code, 0) << w.err;
  // It steps down and names the leader.
  ASSERT_TRUE(WaitFor([&] {
    CtlResult r = CtlOne(0, {"tenant", "list"});
    return r.exit_code == 3 &&
           absl::StrContains(r.err, "the leader is at " + Addr(1));
  })) << Log(0);
  EXPECT_TRUE(absl::StrContains(Log(0), "leadership lost") ||
              absl::StrContains(Log(0), "stepping down"))
      << Log(0);
  EXPECT_EQ(Tenants(), (std::set<std::string>{"acme", "before", "during"}));
  EXPECT_EQ(Leader(), 1);
  // The agent follows the new leader.
  ASSERT_TRUE(WaitFor([&] { return NodesReady(1); }));
}

TEST_F(HaE2E, EtcdMembersDownOneGoesOnTwoRefusesRestoredGoesOn) {
  Start(3);
  etcd_->Kill(2, SIGKILL);
  // One member down: goes on (a write in flight to it may cost a failover).
  ASSERT_TRUE(WaitFor([&] {
    return Ctl({"tenant", "create", "one-down"}).exit_code == 0;
  })) << Log(0)
      << Log(1);
  etcd_->Kill(1, SIGKILL);
  // The last member notices it has no raft leader within the election
  // timeout (1 s) and then refuses at once: nothing is half-written.
  absl::SleepFor(absl::Seconds(2));
  CtlResult r = Ctl({"tenant", "create", "no-quorum"});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // UNAVAILABLE
  ASSERT_TRUE(etcd_->Restart(1).ok());
  ASSERT_TRUE(etcd_->Restart(2).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return Ctl({"tenant", "create", "restored"}).exit_code == 0;
      },
      absl::Seconds(60)))
      << Log(0) << Log(1);
  EXPECT_EQ(Tenants(), (std::set<std::string>{"acme", "one-down", "restored"}));
}

TEST(HaFlagsTest, BadEtcdFlagsExitTwoNamingTheFlag) {
  const std::string dir = ::testing::TempDir();
  struct Case {
    std::vector<std::string> flags;
    std::string names;
  };
  const Case cases[] = {
      {{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1"},
       "--advertise"},
      {{"--store", "etcd", "--advertise", "127.0.0.1:1"}, "--etcd-endpoints"},
      {{"--store", "etcd", "--etcd-endpoints", "a:1,,b:2", "--advertise",
        "127.0.0.1:1"},
       "--etcd-endpoints"},
      {{"--store", "etcd", "--etcd-endpoints", "a:1", "--advertise", "x:1",
        "--etcd-prefix", "joule/"},
       "--etcd-prefix"},
      {{"--store", "etcd", "--etcd-endpoints", "a:1", "--advertise", "x:1",
        "--leader-lease-ttl", "1s"},
       "--leader-lease-ttl"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {Bin("jouled"), "--listen",
                                     absl::StrCat("127.0.0.1:", FreePort()),
                                     "--insecure", "--metrics-listen", ""};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    Process p(argv, dir + "/flags.log");
    EXPECT_EQ(p.Wait(), 2) << c.names << ": " << p.Log();
    EXPECT_TRUE(absl::StrContains(p.Log(), c.names)) << p.Log();
    std::remove((dir + "/flags.log").c_str());
  }
}

}  // namespace
}  // namespace joule::e2e
