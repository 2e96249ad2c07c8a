// Issue 13 (part B): the CLI's habits on every binary, `--` in job submit,
// -o formats, `job wait`, WatchEvents (raw and through joulectl) and the
// per-service health statuses, against a real jouled with agents.
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.grpc.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// Runs a binary to its end; its exit code and output.
CtlResult RunBinary(const Cluster& c, std::vector<std::string> argv) {
  static int n = 0;
  const std::string log = absl::StrCat(c.dir(), "/run.", ++n, ".log");
  Process p(std::move(argv), log);
  CtlResult r;
  r.exit_code = p.Wait(absl::Seconds(30));
  r.out = p.Log();
  return r;
}

TEST(CliHabitsE2E, BadFlagsExit2AndVersionOnEveryBinary) {
  Cluster c;  // only for its temp dir
  struct Case {
    std::vector<std::string> argv;
    int want;
    const char* says;
  } cases[] = {
      {{Bin("jouled"), "--bogus"}, 2, "--bogus"},           // was CLI11's 109
      {{Bin("joule-agent"), "--sim-gpus", "65"}, 2, "65"},  // was 105
      {{Bin("joule-sim"), "--bogus"}, 2, "joule-sim: "},
      {{Bin("joulectl"), "--bogus"}, 2, "--bogus"},
      {{Bin("joulectl"), "-o", "xml", "node", "list"}, 2, "xml"},
      {{Bin("joulectl"), "--timeout", "soon", "node", "list"}, 2, "--timeout"},
      {{Bin("jouled"), "--version"}, 0, "jouled 0."},
      {{Bin("joule-agent"), "--version"}, 0, "joule-agent 0."},
      {{Bin("joulectl"), "--version"}, 0, "joulectl 0."},
      {{Bin("joule-sim"), "--version"}, 0, "joule-sim 0."},
  };
  for (const Case& k : cases) {
    CtlResult r = RunBinary(c, k.argv);
    EXPECT_EQ(r.exit_code, k.want) << k.argv[1] << ": " << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, k.says)) << r.out;
  }
}

TEST(CliHabitsE2E, UsageHelpAndNearestCommand) {
  Cluster c;
  CtlResult bare = RunBinary(c, {Bin("joulectl")});
  EXPECT_EQ(bare.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(bare.out, "Subcommands")) << bare.out;
  EXPECT_TRUE(absl::StrContains(bare.out, "power")) << bare.out;
  CtlResult help = RunBinary(c, {Bin("joulectl"), "help", "job"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(help.out, "wait")) << help.out;
  CtlResult noun = RunBinary(c, {Bin("joulectl"), "node"});
  EXPECT_EQ(noun.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(noun.out, "drain")) << noun.out;
  CtlResult typo = RunBinary(c, {Bin("joulectl"), "nod", "lst"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(typo.out, "did you mean `node list`?"))
      << typo.out;
  EXPECT_EQ(std::count(typo.out.begin(), typo.out.end(), '\n'), 1) << typo.out;
  CtlResult comp = RunBinary(c, {Bin("joulectl"), "completion", "bash"});
  EXPECT_EQ(comp.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(comp.out, "complete -F _joulectl joulectl"));
  EXPECT_TRUE(absl::StrContains(comp.out, "\"job wait\") flags=")) << comp.out;
  // job submit without `--`, or `--` elsewhere: exit 2, nothing sent.
  CtlResult no_dash = RunBinary(c, {Bin("joulectl"), "--insecure", "job",
                                    "submit", "--gpus", "1", "sleep", "1"});
  EXPECT_EQ(no_dash.exit_code, 2) << no_dash.out;
  EXPECT_TRUE(absl::StrContains(no_dash.out, "after --")) << no_dash.out;
  CtlResult empty = RunBinary(
      c, {Bin("joulectl"), "--insecure", "job", "submit", "--gpus", "1", "--"});
  EXPECT_EQ(empty.exit_code, 2) << empty.out;
  CtlResult stray =
      RunBinary(c, {Bin("joulectl"), "--insecure", "node", "list", "--", "x"});
  EXPECT_EQ(stray.exit_code, 2) << stray.out;
}

// joulectl builds only the noun its command line names (cli/main.cc,
// "command tree"), the whole tree for `help`, completion and typos: every
// noun's and verb's `--help` is the whole tree's `help NOUN [VERB]` (but
// for the usage line's program name), and a typo after a known noun still
// gets the nearest command.
TEST(CliHabitsE2E, EachNounAloneHelpsAsTheWholeTree) {
  Cluster c;
  CtlResult comp = RunBinary(c, {Bin("joulectl"), "completion", "bash"});
  ASSERT_EQ(comp.exit_code, 0) << comp.out;
  std::vector<std::vector<std::string>> commands;
  for (absl::string_view line : absl::StrSplit(comp.out, '\n')) {
    // `    "job wait") flags="..." ;;` and `    "job") verbs="..."; ...`
    if (!absl::ConsumePrefix(&line, "    \"")) continue;
    const size_t end = line.find("\")");
    if (end == absl::string_view::npos) continue;
    commands.push_back(absl::StrSplit(line.substr(0, end), ' '));
  }
  ASSERT_GT(commands.size(), 50u);
  auto without_usage = [](const std::string& help) {
    std::vector<std::string> lines = absl::StrSplit(help, '\n');
    std::string usage;
    for (std::string& l : lines) {
      if (absl::StartsWith(l, "Usage: ")) std::swap(usage, l);
    }
    return std::make_pair(usage, absl::StrJoin(lines, "\n"));
  };
  for (const std::vector<std::string>& cmd : commands) {
    const std::string name = absl::StrJoin(cmd, " ");
    std::vector<std::string> help_argv = {Bin("joulectl"), "help"};
    help_argv.insert(help_argv.end(), cmd.begin(), cmd.end());
    std::vector<std::string> flag_argv = {Bin("joulectl")};
    flag_argv.insert(flag_argv.end(), cmd.begin(), cmd.end());
    flag_argv.push_back("--help");
    const CtlResult whole = RunBinary(c, help_argv);
    const CtlResult alone = RunBinary(c, flag_argv);
    EXPECT_EQ(whole.exit_code, 0) << name << ": " << whole.out;
    EXPECT_EQ(alone.exit_code, 0) << name << ": " << alone.out;
    const auto [whole_usage, whole_rest] = without_usage(whole.out);
    const auto [alone_usage, alone_rest] = without_usage(alone.out);
    EXPECT_EQ(alone_rest, whole_rest) << name;
    // "Usage: submit [OPTIONS]" (the whole tree's, unparsed) and
    // "Usage: .../joulectl job submit [OPTIONS]".
    ASSERT_TRUE(absl::StartsWith(whole_usage, "Usage: " + cmd.back()))
        << whole_usage;
    EXPECT_TRUE(absl::EndsWith(
        alone_usage, absl::StrCat("joulectl ", name,
                                  whole_usage.substr(7 + cmd.back().size()))))
        << alone_usage << " / " << whole_usage;
  }
  const CtlResult verb_typo = RunBinary(c, {Bin("joulectl"), "job", "lst"});
  EXPECT_EQ(verb_typo.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(verb_typo.out,
                                "unknown command \"job lst\"; did you mean "
                                "`job list`? (joulectl help)"))
      << verb_typo.out;
  const CtlResult help_typo =
      RunBinary(c, {Bin("joulectl"), "help", "tenant", "lst"});
  EXPECT_EQ(help_typo.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(help_typo.out, "did you mean `tenant list`?"))
      << help_typo.out;
}

class CliE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartCluster(c_, {"n1"}, {"acme", "globex"}));
  }
  std::string Submit(std::vector<std::string> args) {
    std::vector<std::string> a = {"job", "submit"};
    a.insert(a.end(), args.begin(), args.end());
    CtlResult r = c_.Ctl(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripAsciiWhitespace(r.out));
  }
  Cluster c_;
};

// Everything after `--` is the job's command whatever option comes last
// before it (--env used to swallow the `--` and then `-c`).
TEST_F(CliE2E, DoubleDashEndsOptionsWhicheverOptionIsLast) {
  const std::vector<std::vector<std::string>> lasts = {
      {"--env", "K=V"},        {"--env", "A=1", "--env", "K=V"},
      {"--name", "n"},         {"--class", "spot"},
      {"--priority", "1"},     {"--tenant", "acme"},
      {"--gpus", "1"},         {"--nodes", "1"},
      {"--sim-load", "0.5"},   {"--request-id", "r-last"},
      {"--max-runtime", "1h"}, {"--power", "500W"},
      {"--min-power", "300W"}, {"--gpu-model", "H100"},
  };
  for (const auto& last : lasts) {
    // The other options first (each once), then `last`.
    std::vector<std::string> args;
    for (const auto& [flag, value] :
         std::vector<std::pair<std::string, std::string>>{
             {"--tenant", "acme"}, {"--gpus", "1"}, {"--env", "K=V"}}) {
      if (flag != last[0]) {
        args.push_back(flag);
        args.push_back(value);
      }
    }
    args.insert(args.end(), last.begin(), last.end());
    for (const char* a : {"--", "sh", "-c", "echo hi $K"}) args.push_back(a);
    const std::string id = Submit(args);
    ASSERT_FALSE(id.empty()) << last[0];
    CtlResult w = c_.Ctl({"job", "wait", id, "--timeout", "60s"});
    EXPECT_EQ(w.exit_code, 0) << last[0] << ": " << w.out << w.err;
    CtlResult logs = c_.Ctl({"job", "logs", id});
    EXPECT_EQ(logs.out, "hi V\n") << last[0];
  }
}

TEST_F(CliE2E, JobWaitExitCodeIsTheOutcome) {
  const std::string ok =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  const std::string bad =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "sh", "-c", "exit 3"});
  const std::string slow =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "sleep", "60"});
  CtlResult w_ok = c_.Ctl({"job", "wait", ok});
  EXPECT_EQ(w_ok.exit_code, 0) << w_ok.err;
  EXPECT_TRUE(absl::StrContains(w_ok.out, ok + " succeeded")) << w_ok.out;
  CtlResult w_bad = c_.Ctl({"job", "wait", bad});
  EXPECT_EQ(w_bad.exit_code, 4) << w_bad.err;
  EXPECT_TRUE(absl::StrContains(w_bad.out, "(exit code 3)")) << w_bad.out;
  // Already ended: answered at once, the same way.
  EXPECT_EQ(c_.Ctl({"job", "wait", bad}).exit_code, 4);
  CtlResult w_slow = c_.Ctl({"job", "wait", slow, "--timeout", "1s"});
  EXPECT_EQ(w_slow.exit_code, 6) << w_slow.err;
  EXPECT_TRUE(absl::StrContains(w_slow.err, "not ended after 1s"))
      << w_slow.err;
  ASSERT_EQ(c_.Ctl({"job", "cancel", slow}).exit_code, 0);
  CtlResult w_cancel = c_.Ctl({"-o", "json", "job", "wait", slow});
  EXPECT_EQ(w_cancel.exit_code, 5) << w_cancel.err;
  EXPECT_TRUE(absl::StrContains(w_cancel.out, "\"JOB_STATE_CANCELLED\""))
      << w_cancel.out;
  CtlResult unknown = c_.Ctl({"job", "wait", "job-999999"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.err;
}

TEST_F(CliE2E, OutputFormatsOnListsAndSingleResults) {
  const std::string id =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  ASSERT_EQ(c_.Ctl({"job", "wait", id}).exit_code, 0);
  CtlResult yaml = c_.Ctl({"-o", "yaml", "job", "list"});
  EXPECT_EQ(yaml.exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(yaml.out, "jobs:\n  - id: " + id)) << yaml.out;
  EXPECT_TRUE(absl::StrContains(yaml.out, "state: JOB_STATE_SUCCEEDED"))
      << yaml.out;
  CtlResult csv = c_.Ctl({"-o", "csv", "job", "list"});
  EXPECT_TRUE(absl::StartsWith(csv.out, "ID,TENANT,NAME,STATE,CLASS,GPUS"))
      << csv.out;
  CtlResult table = c_.Ctl({"job", "list"});
  CtlResult wide = c_.Ctl({"job", "list", "-o", "wide"});
  EXPECT_FALSE(absl::StrContains(table.out, "SUBMITTED")) << table.out;
  EXPECT_TRUE(absl::StrContains(wide.out, "SUBMITTED")) << wide.out;
  // A command without a table: csv and yaml of its message.
  CtlResult show_csv = c_.Ctl({"-o", "csv", "job", "show", id});
  EXPECT_TRUE(absl::StartsWith(show_csv.out, "id,")) << show_csv.out;
  CtlResult tree = c_.Ctl({"power", "tree", "-o", "yaml"});
  EXPECT_TRUE(absl::StrContains(tree.out, "domains:\n  - name: site"))
      << tree.out;
  // --limit and --since on lists.
  Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  v1::ListJobsResponse latest;
  c_.CtlJson({"job", "list", "--limit", "1"}, &latest);
  ASSERT_EQ(latest.jobs_size(), 1);
  EXPECT_NE(latest.jobs(0).id(), id);  // the latest one
  v1::ListJobsResponse recent;
  c_.CtlJson({"job", "list", "--since", "1h"}, &recent);
  EXPECT_EQ(recent.jobs_size(), 2);
}

// Reads `stream` until `pred` holds for a message or the stream ends.
bool ReadUntil(grpc::ClientReader<v1::WatchEventsResponse>* stream,
               const std::function<bool(const v1::WatchEventsResponse&)>& pred,
               std::vector<v1::WatchEventsResponse>* seen) {
  v1::WatchEventsResponse m;
  while (stream->Read(&m)) {
    seen->push_back(m);
    if (pred(m)) return true;
  }
  return false;
}

TEST_F(CliE2E, WatchEventsStreamsJobChangesTenantsSeeTheirOwn) {
  const std::string acme = c_.CreateToken("tenant", "acme");
  auto stub = v1::AdminService::NewStub(c_.Channel());
  // acme's subscription and the operator's.
  grpc::ClientContext tctx, octx;
  Cluster::Authorize(&tctx, acme);
  c_.Authorize(&octx);
  tctx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(60));
  octx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(60));
  v1::WatchEventsRequest req;
  req.set_jobs(true);
  auto tstream = stub->WatchEvents(&tctx, req);
  auto ostream = stub->WatchEvents(&octx, req);
  v1::WatchEventsResponse first;
  ASSERT_TRUE(tstream->Read(&first));
  EXPECT_TRUE(first.subscribed());
  ASSERT_TRUE(ostream->Read(&first));
  EXPECT_TRUE(first.subscribed());

  const std::string g =
      Submit({"--tenant", "globex", "--gpus", "1", "--", "true"});
  ASSERT_EQ(c_.Ctl({"job", "wait", g}).exit_code, 0);
  const std::string a =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  ASSERT_EQ(c_.Ctl({"job", "wait", a}).exit_code, 0);
  auto done = [](const std::string& id) {
    return [id](const v1::WatchEventsResponse& m) {
      return m.job().job_id() == id &&
             m.job().state() == v1::JOB_STATE_SUCCEEDED;
    };
  };
  std::vector<v1::WatchEventsResponse> op_seen, t_seen;
  ASSERT_TRUE(ReadUntil(ostream.get(), done(a), &op_seen));
  ASSERT_TRUE(ReadUntil(tstream.get(), done(a), &t_seen));
  bool op_saw_globex = false, op_saw_running = false;
  for (const auto& m : op_seen) {
    op_saw_globex |= m.job().tenant() == "globex";
    op_saw_running |=
        m.job().job_id() == a && m.job().state() == v1::JOB_STATE_RUNNING;
  }
  EXPECT_TRUE(op_saw_globex);
  EXPECT_TRUE(op_saw_running);
  for (const auto& m : t_seen) {  // the tenant: nothing of globex's
    EXPECT_NE(m.job().tenant(), "globex") << m.DebugString();
    if (m.has_event()) EXPECT_NE(m.event().subject(), g) << m.DebugString();
  }
  tctx.TryCancel();
  octx.TryCancel();
  tstream->Finish();
  ostream->Finish();

  // The agent role may not watch (auth/authz_table.cc).
  const std::string agent = c_.CreateToken("agent", "n1");
  grpc::ClientContext actx;
  Cluster::Authorize(&actx, agent);
  auto astream = stub->WatchEvents(&actx, req);
  v1::WatchEventsResponse m;
  EXPECT_FALSE(astream->Read(&m));
  EXPECT_EQ(astream->Finish().error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(CliE2E, EventsWatchPrintsNewEventsAsTheyHappen) {
  std::vector<std::string> argv = c_.CtlCommand();
  for (const char* a : {"events", "--watch", "--kind", "cap"})
    argv.push_back(a);
  const std::string log = c_.dir() + "/events-watch.log";
  Process watch(argv, log);
  // The stream is open once the (empty) list has been printed.
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(watch.Log(), "TIME"); }));
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_EQ(
      c_.Ctl({"power", "set-cap", "site", "900kW", "--reason", "watch test"})
          .exit_code,
      0);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(watch.Log(), "cap  site") &&
           absl::StrContains(watch.Log(), "watch test");
  })) << watch.Log();
  watch.Signal(SIGTERM);
  watch.Wait();
}

// A cap cut far below the measured draw asks for --yes; --dry-run prints
// what the power loop would do (PreviewPowerCap) and changes nothing.
TEST_F(CliE2E, CapCutFarBelowDrawNeedsYesDryRunShowsThePlan) {
  const std::string id =
      Submit({"--tenant", "acme", "--gpus", "8", "--class", "spot",
              "--sim-load", "1", "--", "sleep", "120"});
  ASSERT_TRUE(WaitFor([&] {
    v1::Job j;
    c_.CtlJson({"job", "show", id}, &j);
    v1::Node n;
    c_.CtlJson({"node", "show", "n1"}, &n);
    return j.state() == v1::JOB_STATE_RUNNING && n.power_mw() > 3'000'000;
  }));
  CtlResult dry = c_.Ctl({"power", "set-cap", "site", "1kW", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_TRUE(absl::StrContains(dry.out, "nothing changed (--dry-run)"))
      << dry.out;
  EXPECT_TRUE(absl::StrContains(dry.out, id)) << dry.out;
  EXPECT_TRUE(absl::StrContains(dry.out, "preempt")) << dry.out;
  CtlResult no = c_.Ctl({"power", "set-cap", "site", "1kW"});
  EXPECT_EQ(no.exit_code, 2) << no.err;
  EXPECT_TRUE(absl::StrContains(no.err, "far below its measured draw"))
      << no.err;
  EXPECT_TRUE(absl::StrContains(no.err, "add --yes")) << no.err;
  v1::GetPowerTreeResponse tree;
  c_.CtlJson({"power", "tree"}, &tree);
  EXPECT_EQ(tree.domains(0).cap_mw(), 1'000'000'000'000);  // 1 GW, unchanged
  // A cut that preempts nothing and stays above half the draw: no question.
  EXPECT_EQ(c_.Ctl({"power", "set-cap", "site", "900MW"}).exit_code, 0);
  CtlResult yes = c_.Ctl({"power", "set-cap", "site", "1kW", "--yes"});
  EXPECT_EQ(yes.exit_code, 0) << yes.err;
  EXPECT_TRUE(WaitFor([&] {
    v1::Job j;
    c_.CtlJson({"job", "show", id}, &j);
    return j.state() == v1::JOB_STATE_PENDING;  // preempted, requeued
  }));
  c_.Ctl({"job", "cancel", id});
}

// grpc.health.v1 answers SERVING for each joule service by name:
// HealthCheckRequest{service: NAME} is field 1 (0x0a, length, NAME).
TEST_F(CliE2E, HealthStatusPerService) {
  grpc::GenericStub stub(c_.Channel());
  grpc::CompletionQueue cq;
  auto check = [&](const std::string& service) {
    grpc::ClientContext ctx;
    std::string bytes =
        std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
    grpc::Slice s(bytes);
    grpc::ByteBuffer req(&s, 1), resp;
    auto call =
        stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", req, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&resp, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    std::vector<grpc::Slice> slices;
    (void)resp.Dump(&slices);
    std::string out;
    for (const auto& sl : slices) {
      out.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    return std::make_pair(status.error_code(), out);
  };
  for (const char* svc : {"joule.v1.JobService", "joule.v1.AdminService",
                          "joule.v1.BillingService", "joule.v1.AuthService",
                          "joule.v1.AgentService"}) {
    auto [code, out] = check(svc);
    EXPECT_EQ(code, grpc::StatusCode::OK) << svc;
    EXPECT_EQ(out, std::string("\x08\x01", 2)) << svc;  // SERVING
  }
  EXPECT_EQ(check("joule.v1.NoSuchService").first, grpc::StatusCode::NOT_FOUND);
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace joule::e2e
