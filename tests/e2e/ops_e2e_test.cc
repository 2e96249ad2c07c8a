// Operations: jouled's operator log (JSON lines naming job, node and
// domain), the counters of throttles and preemptions by class and cause and
// of submissions, and joule-agent's own metrics endpoint.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

std::string Scrape(int port) {
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return "";
  return res->body;
}

// The sum of the samples whose line starts with `prefix`.
double Sum(const std::string& text, const std::string& prefix) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum += v;
  }
  return sum;
}

bool Promtool(const Cluster& c, const std::string& text) {
  WriteFile(c.dir() + "/scrape.txt", text);
  Process p(
      {"/bin/sh", "-c", "promtool check metrics < " + c.dir() + "/scrape.txt"},
      c.dir() + "/promtool.log");
  return p.Wait() == 0;
}

// One rack rk1 (11 kW) with n1: base 1 kW + 8 idle GPUs x 70 W = 1.56 kW;
// an 8-GPU job at 700 W commits 1 + 8 x 0.7 = 6.6 kW. A cut to 3 kW is far
// below that: the power loop throttles (to 200 W: 1 + 8 x 0.2 = 2.6 kW)
// or preempts.
std::string Config() {
  return ConfigBuilder().Domain("rk1", "11kW").Node("n1", "rk1").Text();
}

TEST(OpsE2E, JsonLogNamesJobNodeDomainAndCountersByClassAndCause) {
  Cluster::Options o;
  o.config_text = Config();
  o.daemon_flags = {"--log-format", "json", "--log-level", "info"};
  Cluster c(o);
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"n1"}));
  CtlResult sub = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "8",
                         "--", "sleep", "60"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string job(absl::StripAsciiWhitespace(sub.out));
  // A submission for an unknown tenant is refused and counted as rejected.
  EXPECT_EQ(c.Ctl({"job", "submit", "--tenant", "nobody", "--gpus", "1", "--",
                   "true"})
                .exit_code,
            1);
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(
        c.daemon()->Log(),
        absl::StrCat("\"event\":\"placement\",\"job\":\"", job,
                     "\",\"node\":\"n1\",\"domain\":"
                     "\"rk1\""));
  })) << c.daemon()->Log();
  ASSERT_EQ(c.Ctl({"power", "set-cap", "rk1", "3kW", "--reason", "test cut", "--yes"})
                .exit_code,
            0);
  // The cap change, then a throttle or preemption of the job, each one JSON
  // line with its job, node and domain.
  ASSERT_TRUE(WaitFor([&] {
    const std::string log = c.daemon()->Log();
    return absl::StrContains(log, "\"event\":\"cap\",\"domain\":\"rk1\"") &&
           (absl::StrContains(
                log, absl::StrCat("\"level\":\"warn\",\"event\":\"throttle\","
                                  "\"job\":\"",
                                  job,
                                  "\",\"node\":\"n1\",\"domain\":\"rk1\","
                                  "\"class\":\"on-demand\"")) ||
            absl::StrContains(
                log, absl::StrCat("\"level\":\"warn\",\"event\":\"preempt\","
                                  "\"job\":\"",
                                  job, "\",\"node\":\"n1\"")));
  })) << c.daemon()->Log();

  std::string text;
  ASSERT_TRUE(WaitFor([&] {
    text = Scrape(c.metrics_port());
    return Sum(text,
               "joule_throttles_total{class=\"on-demand\",cause=\"cap\"}") +
               Sum(text, "joule_preemptions_total{class=\"on-demand\"") >=
           1;
  })) << text;
  // Every metric of docs/operations.md's table is in the scrape, except
  // joule-agent's own and the counters that appear on their first event.
  const std::string docs =
      ReadFile(std::string(JOULE_SOURCE_DIR) + "/docs/operations.md");
  int documented = 0;
  for (absl::string_view line : absl::StrSplit(docs, '\n')) {
    if (!absl::StartsWith(line, "| `joule_")) continue;
    const std::string name(line.substr(3, line.find('`', 3) - 3));
    if (absl::StrContains(line, "joule-agent only") ||
        name == "joule_restores_total" || name == "joule_preemptions_total" ||
        name == "joule_throttles_total" || name == "joule_usage_events_total" ||
        name == "joule_store_write_failures_total") {
      continue;
    }
    ++documented;
    EXPECT_TRUE(absl::StrContains(text, "# TYPE " + name + " ")) << name;
  }
  EXPECT_GE(documented, 15);
  EXPECT_EQ(Sum(text, "joule_job_submissions_total{result=\"accepted\"}"), 1);
  EXPECT_EQ(Sum(text, "joule_job_submissions_total{result=\"rejected\"}"), 1);
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    EXPECT_TRUE(Promtool(c, text)) << ReadFile(c.dir() + "/promtool.log");
  }
}

TEST(OpsE2E, AgentServesItsNodesMetrics) {
  Cluster c;
  c.StartDaemon();
  Process* agent = c.StartAgent("n1", {"--metrics-listen", "127.0.0.1:0"});
  int port = 0;
  ASSERT_TRUE(WaitFor([&] {
    const std::string log = agent->Log();
    const std::string key = "joule-agent: metrics on http://127.0.0.1:";
    const size_t at = log.find(key);
    if (at == std::string::npos) return false;
    const size_t end = log.find('/', at + key.size());
    return absl::SimpleAtoi(log.substr(at + key.size(), end - at - key.size()),
                            &port);
  })) << agent->Log();
  const std::string text = Scrape(port);
  int gpus = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "joule_gpu_power_watts{node=\"n1\"")) ++gpus;
  }
  EXPECT_EQ(gpus, 8) << text;
  EXPECT_EQ(Sum(text, "joule_agent_backend_up{node=\"n1\",backend=\"sim\"}"),
            1);
  EXPECT_GT(Sum(text, "joule_gpu_energy_joules_total{node=\"n1\""), 0);
  for (const char* name :
       {"joule_agent_build_info", "joule_gpu_healthy",
        "joule_gpu_power_limit_watts", "joule_gpu_utilization_ratio",
        "joule_gpu_temperature_celsius", "joule_node_power_watts"}) {
    EXPECT_TRUE(absl::StrContains(text, absl::StrCat("# TYPE ", name, " ")))
        << name;
  }
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    EXPECT_TRUE(Promtool(c, text)) << ReadFile(c.dir() + "/promtool.log");
  }

  // A non-loopback address is refused (exit 2), naming the flag.
  Process bad({Bin("joule-agent"), "--server", c.server(), "--insecure",
               "--token-file", "/dev/null", "--metrics-listen", "0.0.0.0:1"},
              c.dir() + "/bad-agent.log");
  EXPECT_NE(bad.Wait(), 0);
}

int64_t CapMw(const Cluster& c, const std::string& domain) {
  v1::GetPowerTreeResponse tree;
  c.CtlJson({"power", "tree"}, &tree);
  for (const v1::PowerDomain& d : tree.domains()) {
    if (d.name() == domain) return d.cap_mw();
  }
  return -1;
}

TEST(OpsE2E, ConfigReloadAppliesCapsRefusesBadFilesAndRunsOnSighup) {
  Cluster::Options o;
  o.config_text = Config();
  Cluster c(o);
  c.StartDaemon();
  const std::string conf = c.dir() + "/cluster.conf";  // jouled's --config
  auto write = [&](const std::string& text) {
    WriteFile(conf, text + "\nbilling { allow_unpriced: true }\n");
  };
  ASSERT_EQ(CapMw(c, "rk1"), 11'000'000);

  // rk1 11 kW -> 12 kW by joulectl.
  std::string text = Config();
  text.replace(text.find("\"11kW\""), 6, "\"12kW\"");
  write(text);
  CtlResult r = c.Ctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "rk1 cap")) << r.out;
  EXPECT_EQ(CapMw(c, "rk1"), 12'000'000);
  v1::ListEventsResponse events;
  c.CtlJson({"events", "--kind", "config"}, &events);
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_TRUE(absl::StrContains(events.events(0).message(), "reloaded: rk1"));

  // A bad file: refused, nothing changed, the refusal recorded.
  WriteFile(conf, "domain { name: \"site\" cap: \"lots\" }\n");
  r = c.Ctl({"config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "cluster.conf")) << r.err;
  EXPECT_EQ(CapMw(c, "rk1"), 12'000'000);
  // A change that needs a restart (a new node): refused, caps untouched.
  text.replace(text.find("\"12kW\""), 6, "\"14kW\"");
  write(text + "node { name: \"n9\" domain: \"rk1\" node_model: \"hgx\" }\n");
  r = c.Ctl({"config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "restart")) << r.err;
  EXPECT_EQ(CapMw(c, "rk1"), 12'000'000);

  // SIGHUP: rk1 -> 13 kW; the reload's log line.
  text.replace(text.find("\"14kW\""), 6, "\"13kW\"");
  write(text);
  c.daemon()->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return CapMw(c, "rk1") == 13'000'000; }));
  EXPECT_TRUE(absl::StrContains(
      c.daemon()->Log(), "config-reload path=" + conf + " result=applied"))
      << c.daemon()->Log();
  EXPECT_TRUE(c.daemon()->Running());
}

// What jouled tells systemd: READY=1 once serving, WATCHDOG=1 from its
// loop, STOPPING=1 on SIGTERM, as datagrams on $NOTIFY_SOCKET.
TEST(OpsE2E, JouledNotifiesSystemdReadyWatchdogStopping) {
  Cluster c;
  const std::string path = c.dir() + "/notify.sock";
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{.tv_sec = 1, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  c.StartDaemon();
  unsetenv("NOTIFY_SOCKET");
  std::string got;
  auto read_until = [&](const std::string& want) {
    return WaitFor([&] {
      char buf[512];
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) got.append(buf, n).append("\n");
      return absl::StrContains(got, want);
    });
  };
  EXPECT_TRUE(read_until("READY=1")) << got;
  EXPECT_TRUE(read_until("WATCHDOG=1")) << got;
  c.daemon()->Signal(SIGTERM);
  EXPECT_TRUE(read_until("STOPPING=1")) << got;
  EXPECT_EQ(c.daemon()->Wait(), 0);
  close(fd);
}

}  // namespace
}  // namespace joule::e2e
