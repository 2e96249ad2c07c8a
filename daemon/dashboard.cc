#include "daemon/dashboard.h"

#include "common/json_string.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/cluster_manager.h"
#include "daemon/ops_events.h"
#include "httplib.h"

namespace joule::daemon {
namespace {

std::string Q(absl::string_view s) { return JsonQuote(s); }

// Watts from milliwatts, exactly (three decimals at most).
std::string W(int64_t mw) {
  if (mw % 1000 == 0) return absl::StrCat(mw / 1000);
  return absl::StrFormat("%.3f", mw / 1000.0);
}

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace

Dashboard::Dashboard(ClusterManager* manager, const Clock* clock,
                     absl::Duration step, absl::Duration span)
    : manager_(manager), clock_(clock), history_(span, step) {}

Dashboard::~Dashboard() { Stop(); }

void Dashboard::Start() {
  thread_ = std::thread([this] {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      mu_.Unlock();
      history_.Add(clock_->Now(), manager_->PowerTree());
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&stop_), history_.step());
    }
  });
}

void Dashboard::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::string Dashboard::PowerJson() {
  const v1::GetPowerTreeResponse tree = manager_->PowerTree();
  std::string out = absl::StrCat(
      "{\"admission_mode\":", Q(tree.admission_mode()), ",\"domains\":[");
  bool first = true;
  for (const v1::PowerDomain& d : tree.domains()) {
    absl::StrAppend(&out, first ? "" : ",", "{\"name\":", Q(d.name()),
                    ",\"parent\":", Q(d.parent()), ",\"kind\":", Q(d.kind()),
                    ",\"depth\":", d.depth(), ",\"nodes\":", d.nodes(),
                    ",\"cap_w\":", W(d.cap_mw()),
                    ",\"committed_w\":", W(d.committed_mw()),
                    ",\"measured_w\":", W(d.measured_mw()),
                    ",\"headroom_w\":", W(d.headroom_mw()), "}");
    first = false;
  }
  out += "]}";
  return out;
}

std::string Dashboard::HistoryJson() {
  std::string out = absl::StrCat(
      "{\"step_s\":", absl::ToInt64Seconds(history_.step()), ",\"domains\":{");
  bool first = true;
  for (const std::string& d : history_.Domains()) {
    absl::StrAppend(&out, first ? "" : ",", Q(d), ":[");
    bool p_first = true;
    for (const PowerHistory::Point& p : history_.Points(d)) {
      absl::StrAppend(&out, p_first ? "" : ",", "[", UnixMs(p.time), ",",
                      W(p.cap_mw), ",", W(p.committed_mw), ",",
                      W(p.measured_mw), "]");
      p_first = false;
    }
    out += "]";
    first = false;
  }
  out += "}}";
  return out;
}

std::string Dashboard::NodesJson() {
  std::string out = "{\"nodes\":[";
  bool first = true;
  for (const v1::Node& n : manager_->ListNodes()) {
    absl::StrAppend(
        &out, first ? "" : ",", "{\"name\":", Q(n.name()),
        ",\"domain\":", Q(n.domain()), ",\"state\":",
        Q(n.state() == v1::NODE_STATE_READY ? "ready" : "unreachable"),
        ",\"drained\":", n.drained() ? "true" : "false",
        ",\"power_w\":", W(n.power_mw()), ",\"gpus\":[");
    bool g_first = true;
    for (const v1::GpuStatus& g : n.gpus()) {
      absl::StrAppend(
          &out, g_first ? "" : ",", "{\"index\":", g.index(),
          ",\"model\":", Q(g.model()), ",\"power_w\":", W(g.power_mw()),
          ",\"limit_w\":", W(g.power_limit_mw()),
          ",\"max_w\":", W(g.max_power_limit_mw()),
          ",\"util_pct\":", g.utilization_pct(),
          ",\"temp_c\":", g.temperature_c(), ",\"job\":", Q(g.job_id()), "}");
      g_first = false;
    }
    out += "]}";
    first = false;
  }
  out += "]}";
  return out;
}

std::string Dashboard::QueueJson() {
  std::string out = "{\"pending\":[";
  v1::ListJobsRequest req;
  auto jobs = manager_->ListJobs(req, "");
  bool first = true;
  if (jobs.ok()) {
    for (const v1::Job& j : *jobs) {
      if (j.state() != v1::JOB_STATE_PENDING) continue;
      const uint32_t nodes = std::max<uint32_t>(1, j.spec().nodes());
      absl::StrAppend(&out, first ? "" : ",", "{\"id\":", Q(j.id()),
                      ",\"tenant\":", Q(j.spec().tenant()),
                      ",\"class\":", Q(ClassLabel(j.spec().service_class())),
                      ",\"gpus\":", nodes * j.spec().gpus_per_node(),
                      ",\"reason\":", Q(j.reason()), "}");
      first = false;
    }
  }
  out += "]}";
  return out;
}

std::string Dashboard::EventsJson() {
  std::vector<v1::Event> all;
  for (const char* kind : {"throttle", "restore", "preempt", "cap"}) {
    v1::ListEventsRequest r;
    r.set_kind(kind);
    r.set_limit(20);
    auto events = manager_->ListEvents(r);
    if (events.ok()) all.insert(all.end(), events->begin(), events->end());
  }
  std::sort(all.begin(), all.end(), [](const v1::Event& a, const v1::Event& b) {
    return a.seq() > b.seq();
  });
  if (all.size() > 30) all.resize(30);
  std::string out = "{\"events\":[";
  bool first = true;
  for (const v1::Event& e : all) {
    absl::StrAppend(
        &out, first ? "" : ",", "{\"seq\":", e.seq(),
        ",\"time_ms\":", e.time().seconds() * 1000 + e.time().nanos() / 1000000,
        ",\"kind\":", Q(e.kind()), ",\"subject\":", Q(e.subject()),
        ",\"message\":", Q(e.message()), "}");
    first = false;
  }
  out += "]}";
  return out;
}

void Dashboard::AddRoutes(httplib::Server* server) {
  auto json = [](std::function<std::string()> f) {
    return [f](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content(f(), "application/json");
    };
  };
  server->Get("/", [](const httplib::Request&, httplib::Response& res) {
    // The page may load only what this server serves.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                   "style-src 'self' 'unsafe-inline'; connect-src 'self'");
    res.set_content(kDashboardHtml, "text/html; charset=utf-8");
  });
  server->Get("/chart.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "max-age=3600");
    res.set_content(kChartJs, "application/javascript");
  });
  server->Get("/api/power", json([this] { return PowerJson(); }));
  server->Get("/api/history", json([this] { return HistoryJson(); }));
  server->Get("/api/nodes", json([this] { return NodesJson(); }));
  server->Get("/api/queue", json([this] { return QueueJson(); }));
  server->Get("/api/events", json([this] { return EventsJson(); }));
}

}  // namespace joule::daemon
