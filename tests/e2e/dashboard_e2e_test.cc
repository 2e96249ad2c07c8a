// Operations: jouled's live dashboard in a real browser. A jouled with two
// agents in two racks and jobs (one running per node, one queued); headless
// Chromium loads http://127.0.0.1:METRICS/, runs its JavaScript, and the
// dumped DOM shows every domain of the power tree with the cap and
// committed watts the API reports, the nodes' GPUs, the queued job with its
// reason and the cap event. Saves a screenshot (docs/img/dashboard.png is
// one; set JOULE_DASHBOARD_SCREENSHOT=PATH to write it there). Skipped only
// when chromium is not installed.
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

std::string Chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// rk1 (11 kW) holds n1, rk2 (20 kW) holds n2, under a 1 MW site.
std::string Config() {
  return ConfigBuilder()
      .Domain("rk1", "11kW")
      .Domain("rk2", "20kW")
      .Node("n1", "rk1")
      .Node("n2", "rk2")
      .Text();
}

// 12000 -> "12,000" (the page groups thousands, en-US).
std::string Grouped(int64_t w) {
  std::string digits = absl::StrCat(w < 0 ? -w : w), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (w < 0 ? "-" : "") + out;
}

// Runs chromium headless on `url` with `flags`; stdout to `out`.
int RunChromium(const std::string& dir, const std::string& url,
                const std::string& flags, const std::string& out) {
  const std::string cmd = absl::StrCat(
      "timeout 90 ", Chromium(),
      " --headless=new --no-sandbox --disable-gpu --no-first-run"
      " --disable-extensions --disable-background-networking"
      " --disable-component-update --disable-sync --user-data-dir=",
      dir, "/chromium-profile --window-size=1400,1300 ",
      "--virtual-time-budget=8000 ", flags, " ", url, " > ", out, " 2>> ", dir,
      "/chromium.log");
  return std::system(cmd.c_str());
}

TEST(DashboardE2E, ChromiumShowsTheTreeNodesQueueAndEvents) {
  if (Chromium().empty()) {
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium; "
                    "scripts/install-deps.sh installs it)";
  }
  Cluster::Options o;
  o.config_text = Config();
  Cluster c(o);
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"n1", "n2"}));
  for (int i = 0; i < 3; ++i) {
    CtlResult sub = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "8",
                           "--", "sleep", "120"});
    ASSERT_EQ(sub.exit_code, 0) << sub.err;
  }
  ASSERT_EQ(c.Ctl({"power", "set-cap", "rk2", "19kW", "--reason",
                   "chiller maintenance"})
                .exit_code,
            0);
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(WaitFor([&] {
    c.CtlJson({"job", "list"}, &jobs);
    int running = 0;
    for (const auto& j : jobs.jobs())
      running += j.state() == v1::JOB_STATE_RUNNING;
    return running == 2;
  }));
  std::string queued;
  for (const auto& j : jobs.jobs()) {
    if (j.state() == v1::JOB_STATE_PENDING) queued = j.id();
  }
  ASSERT_FALSE(queued.empty());

  // The page's own data, as the API serves it.
  httplib::Client http("127.0.0.1", c.metrics_port());
  auto page = http.Get("/");
  ASSERT_TRUE(page && page->status == 200);
  EXPECT_TRUE(absl::StrContains(page->body, "<script src=\"/chart.js\">"));
  // Nothing from elsewhere: no http(s) URL in a src or href of the page.
  EXPECT_FALSE(absl::StrContains(page->body, "src=\"http"));
  EXPECT_FALSE(absl::StrContains(page->body, "href=\"http"));
  auto chart = http.Get("/chart.js");
  ASSERT_TRUE(chart && chart->status == 200);
  EXPECT_TRUE(absl::StrContains(chart->body, "Chart.js v3"));

  const std::string url =
      absl::StrCat("http://127.0.0.1:", c.metrics_port(), "/");
  const std::string dom_path = c.dir() + "/dashboard.html";
  ASSERT_EQ(RunChromium(c.dir(), url, "--dump-dom", dom_path), 0)
      << ReadFile(c.dir() + "/chromium.log");
  v1::GetPowerTreeResponse tree;
  c.CtlJson({"power", "tree"}, &tree);
  const std::string dom = ReadFile(dom_path);
  ASSERT_TRUE(absl::StrContains(dom, "data-loaded=\"1\""))
      << "the page's JavaScript did not finish a refresh:\n"
      << dom.substr(0, 2000);
  ASSERT_EQ(tree.domains_size(), 3);
  for (const v1::PowerDomain& d : tree.domains()) {
    // The cap and committed cells: exact watts in data-w, grouped in text
    // (cap and committed do not move while the jobs run; measured does).
    // E.g. rk2: cap 19 kW -> data-w="19000", "19,000 W".
    for (const auto& [cls, mw] :
         {std::pair<std::string, int64_t>{"cap", d.cap_mw()},
          {"committed", d.committed_mw()}}) {
      const std::string cell = absl::StrCat(
          "class=\"num ", cls, "\" data-domain=\"", d.name(), "\" data-w=\"",
          mw / 1000, "\">", Grouped(mw / 1000), " W</td>");
      EXPECT_TRUE(absl::StrContains(dom, cell)) << cell;
    }
    EXPECT_TRUE(absl::StrContains(
        dom, absl::StrCat("<td class=\"domain\" style=\"padding-left: ",
                          8 + 16 * d.depth(), "px;\">", d.name(), "</td>")))
        << d.name();
  }
  // 16 GPU cells, the queued job with why it waits, the cap change.
  int cells = 0;
  for (size_t at = 0; (at = dom.find("class=\"gpu\"", at)) != std::string::npos;
       ++at) {
    ++cells;
  }
  EXPECT_EQ(cells, 16);
  EXPECT_TRUE(absl::StrContains(dom, "<td>" + queued + "</td>"));
  EXPECT_TRUE(absl::StrContains(dom, "chiller maintenance"));
  // One history chart per domain.
  EXPECT_TRUE(absl::StrContains(dom, "class=\"chart\" data-domain=\"rk1\""));

  const std::string png = c.dir() + "/dashboard.png";
  ASSERT_EQ(RunChromium(c.dir(), url, "--screenshot=" + png, "/dev/null"), 0)
      << ReadFile(c.dir() + "/chromium.log");
  const std::string shot = ReadFile(png);
  ASSERT_GT(shot.size(), 10000u);
  EXPECT_EQ(shot.substr(1, 3), "PNG");
  if (const char* keep = std::getenv("JOULE_DASHBOARD_SCREENSHOT")) {
    WriteFile(keep, shot);
  }
}

}  // namespace
}  // namespace joule::e2e
