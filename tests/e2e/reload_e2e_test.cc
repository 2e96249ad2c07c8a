// Config reload of everything that can change at run time (issue #13), and
// `--watch` redraws pushed by WatchEvents rather than polled.
#include <signal.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "joule/v1/auth.pb.h"
#include "joule/v1/joule.grpc.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

std::string Config(const std::string& rack_cap, const std::string& extra) {
  return ConfigBuilder().Domain("rk1", rack_cap).Node("n1", "rk1").Text() +
         extra;
}

std::string Quota(int gpus) {
  return absl::StrCat(
      "tenant { name: \"acme\" quota { max_running_gpus { service_class: "
      "\"on-demand\" gpus: ",
      gpus, " } } }\n");
}

int64_t CapMw(const Cluster& c, const std::string& domain) {
  v1::GetPowerTreeResponse tree;
  c.CtlJson({"power", "tree"}, &tree);
  for (const v1::PowerDomain& d : tree.domains()) {
    if (d.name() == domain) return d.cap_mw();
  }
  return -1;
}

// A quota lowered by a reload makes the next job wait with a reason naming
// it, raised again it starts; a bad value, or a reload that also changes
// what needs a restart, changes nothing (not even its cap change); the log
// level reloads too.
TEST(ReloadE2E, QuotasSettingsAndLogLevelReloadAllOrNothing) {
  Cluster::Options o;
  o.config_text = Config("11kW", Quota(16));
  Cluster c(o);
  c.StartDaemon();
  c.StartAgent("n1");
  const std::string conf = c.dir() + "/cluster.conf";  // jouled's --config
  auto write = [&](const std::string& text) {
    WriteFile(conf, text + "billing { allow_unpriced: true }\n");
  };
  ASSERT_TRUE(WaitFor([&] {
    v1::ListNodesResponse n;
    c.CtlJson({"node", "list"}, &n);
    return n.nodes_size() == 1 && n.nodes(0).state() == v1::NODE_STATE_READY;
  }));
  ASSERT_EQ(c.Ctl({"tenant", "create", "acme"}).exit_code, 0);
  auto submit = [&](int gpus) {
    CtlResult r = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus",
                         absl::StrCat(gpus), "--", "sleep", "120"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripAsciiWhitespace(r.out));
  };
  const std::string a = submit(4);
  ASSERT_TRUE(
      WaitFor([&] { return ShowJob(c, a).state() == v1::JOB_STATE_RUNNING; }));

  // on-demand quota 16 -> 4 and stop_grace 5s -> 3s, by one reload.
  write(Config("11kW", Quota(4) + "scheduler { stop_grace: \"3s\" }\n"));
  CtlResult r = c.Ctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, "tenant[acme].quota.max_running_gpus[on-demand] 16 -> 4"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "scheduler.stop_grace 5s -> 3s"))
      << r.out;
  // acme runs 4 on-demand GPUs: 4 + 4 > 4, so b waits, naming the quota.
  const std::string b = submit(4);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(ShowJob(c, b).reason(), "max_running_gpus 4");
  })) << ShowJob(c, b).reason();
  EXPECT_EQ(ShowJob(c, b).state(), v1::JOB_STATE_PENDING);
  // One config event per setting, subject = the field (and a log line).
  v1::ListEventsResponse events;
  c.CtlJson({"events", "--kind", "config"}, &events);
  bool quota_event = false;
  for (const v1::Event& e : events.events()) {
    quota_event |=
        e.subject() == "tenant[acme].quota.max_running_gpus[on-demand]";
  }
  EXPECT_TRUE(quota_event);
  EXPECT_TRUE(absl::StrContains(c.daemon()->Log(),
                                "tenant[acme].quota.max_running_gpus"))
      << c.daemon()->Log();

  // A bad value: refused naming the field; quota, grace and cap unchanged.
  write(Config("12kW",
               "tenant { name: \"acme\" quota { max_running_gpus { "
               "service_class: \"gold\" gpus: 8 } } }\n"));
  r = c.Ctl({"config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "service_class")) << r.err;
  // A raised quota and cap with an admission change: refused as a whole.
  write(Config("12kW", Quota(16) + "scheduler { admission: \"measured\" }\n"));
  r = c.Ctl({"config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "scheduler.admission")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "restart")) << r.err;
  EXPECT_EQ(CapMw(c, "rk1"), 11'000'000);
  v1::ListTenantsResponse tenants;
  c.CtlJson({"tenant", "list"}, &tenants);
  ASSERT_EQ(tenants.tenants_size(), 1);
  EXPECT_EQ(tenants.tenants(0).quota().max_running_gpus_on_demand(), 4u);
  EXPECT_EQ(ShowJob(c, b).state(), v1::JOB_STATE_PENDING);

  // Quota back to 16, cap 12 kW, log level warn: b starts, and its
  // placement (an info line) is no longer logged.
  write(Config("12kW", Quota(16) + "scheduler { stop_grace: \"3s\" }\n"
                                   "log { level: \"warn\" }\n"));
  r = c.Ctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "rk1 cap 11.0 kW -> 12.0 kW")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "log.level (--log-level) -> warn"))
      << r.out;
  EXPECT_TRUE(
      WaitFor([&] { return ShowJob(c, b).state() == v1::JOB_STATE_RUNNING; }));
  EXPECT_EQ(CapMw(c, "rk1"), 12'000'000);
  EXPECT_TRUE(absl::StrContains(c.daemon()->Log(), "placement job=" + a));
  EXPECT_FALSE(absl::StrContains(c.daemon()->Log(), "placement job=" + b))
      << c.daemon()->Log();
}

// `node list --watch` and `power tree --watch` poll no more: they redraw
// when jouled pushes a change (an event, a job change, a power round).
TEST(WatchE2E, NodeListAndPowerTreeRedrawOnPushedChanges) {
  Cluster::Options o;
  o.config_text = Config("11kW", "");
  Cluster c(o);
  c.StartDaemon();
  c.StartAgent("n1");
  ASSERT_TRUE(WaitFor([&] {
    v1::ListNodesResponse n;
    c.CtlJson({"node", "list"}, &n);
    return n.nodes_size() == 1 && n.nodes(0).state() == v1::NODE_STATE_READY;
  }));
  auto start = [&](std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> argv = c.CtlCommand();
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Process>(argv, c.dir() + "/" + name + ".log");
  };
  auto nodes = start({"node", "list", "--watch"}, "node-watch");
  auto tree = start({"power", "tree", "--watch"}, "tree-watch");
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(nodes->Log(), "n1"); }));
  ASSERT_TRUE(
      WaitFor([&] { return absl::StrContains(tree->Log(), "11.0 kW"); }));
  ASSERT_EQ(c.Ctl({"node", "drain", "n1"}).exit_code, 0);
  ASSERT_EQ(
      c.Ctl({"power", "set-cap", "rk1", "9kW", "--reason", "w"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(nodes->Log(), "ready,drained");
  })) << nodes->Log();
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(tree->Log(), "9.00 kW");
  })) << tree->Log();
  nodes->Signal(SIGTERM);
  tree->Signal(SIGTERM);
  nodes->Wait();
  tree->Wait();
}

// WatchEvents{power}: power-round ticks, to a tenant too (they carry only
// a time), while the tenant still sees no one else's events.
TEST(WatchE2E, PowerRoundTicksReachSubscribersThatAskKeepingTenantScope) {
  Cluster::Options o;
  o.config_text = Config("11kW", "");
  Cluster c(o);
  c.StartDaemon();
  c.StartAgent("n1");
  ASSERT_EQ(c.Ctl({"tenant", "create", "acme"}).exit_code, 0);
  const std::string acme = c.CreateToken("tenant", "acme");
  auto stub = v1::AdminService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  Cluster::Authorize(&ctx, acme);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::WatchEventsRequest req;
  req.set_power(true);
  auto stream = stub->WatchEvents(&ctx, req);
  v1::WatchEventsResponse m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.subscribed());
  ASSERT_EQ(c.Ctl({"power", "set-cap", "rk1", "10kW"}).exit_code, 0);
  int ticks = 0;
  while (ticks < 2 && stream->Read(&m)) {
    EXPECT_FALSE(m.has_event()) << m.DebugString();  // the cap is not acme's
    if (m.has_power_round()) ++ticks;
  }
  EXPECT_EQ(ticks, 2);
  ctx.TryCancel();
  stream->Finish();
}

// Every list takes --since and --limit with one meaning (the first N of a
// list in name order, the latest N of one in time order), bounds are exit
// 2 with one line, and -o wide adds columns.
TEST(ListsE2E, SinceLimitAndWideOnEveryList) {
  Cluster c;
  c.StartDaemon();
  for (const char* t : {"acme", "beta", "coda"}) {
    ASSERT_EQ(c.Ctl({"tenant", "create", t}).exit_code, 0);
  }
  v1::ListTenantsResponse tenants;
  c.CtlJson({"tenant", "list", "--limit", "2"}, &tenants);
  ASSERT_EQ(tenants.tenants_size(), 2);  // first 2 by name
  EXPECT_EQ(tenants.tenants(0).name(), "acme");
  EXPECT_EQ(tenants.tenants(1).name(), "beta");
  c.CtlJson({"tenant", "list", "--since", "1h"}, &tenants);
  EXPECT_EQ(tenants.tenants_size(), 3);
  c.CtlJson({"tenant", "list", "--since", "0s"}, &tenants);
  EXPECT_EQ(tenants.tenants_size(), 0);  // none created at this instant
  for (const char* price : {"2.00", "2.50"}) {
    CtlResult r = c.Ctl({"price", "set", "gpu-hour", "--gpu-model", "H100",
                         "--class", "on-demand", "--price", price});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  v1::ListPricesResponse all, prices;
  c.CtlJson({"price", "list", "--history"}, &all);
  ASSERT_GE(all.prices_size(), 2);
  c.CtlJson({"price", "list", "--history", "--limit", "1"}, &prices);
  ASSERT_EQ(prices.prices_size(), 1);  // the latest version
  EXPECT_EQ(prices.prices(0).version(),
            all.prices(all.prices_size() - 1).version());
  v1::ListTokensResponse tokens;
  c.CreateToken("tenant", "acme");
  c.CtlJson({"token", "list", "--limit", "1"}, &tokens);
  EXPECT_EQ(tokens.tokens_size(), 1);

  // Wide columns, list by list.
  const std::pair<std::vector<std::string>, std::string> wide[] = {
      {{"tenant", "list"}, "MAX PENDING"},
      {{"price", "list"}, "CARD"},
      {{"contract", "list"}, "GPU-HOURS"},
      {{"token", "list"}, "CREATED BY"},
      {{"audit"}, "PEER"},
      {{"node", "list"}, "ADDRESS"},
      {{"events"}, "SEQ"},
  };
  for (const auto& [args, column] : wide) {
    std::vector<std::string> argv = {"-o", "wide"};
    argv.insert(argv.end(), args.begin(), args.end());
    CtlResult r = c.Ctl(argv);
    ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, column)) << args[0] << ": " << r.out;
    r = c.Ctl(args);
    EXPECT_FALSE(absl::StrContains(r.out, column)) << args[0] << ": " << r.out;
  }

  // Bounds: exit 2, one line naming the flag, on every list.
  for (const char* list :
       {"tenant list", "price list", "contract list", "token list", "node list",
        "job list", "events", "audit"}) {
    std::vector<std::string> base = absl::StrSplit(list, ' ');
    for (const auto& bad :
         std::vector<std::vector<std::string>>{{"--limit", "1000001"},
                                               {"--limit", "-1"},
                                               {"--since", "-1h"},
                                               {"--since", "soon"}}) {
      std::vector<std::string> argv = base;
      argv.insert(argv.end(), bad.begin(), bad.end());
      CtlResult r = c.Ctl(argv);
      EXPECT_EQ(r.exit_code, 2) << list << " " << bad[1] << ": " << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, bad[0])) << list << ": " << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1)
          << list << ": " << r.err;
    }
  }
}

}  // namespace
}  // namespace joule::e2e
