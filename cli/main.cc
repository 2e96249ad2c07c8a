// joulectl: the one CLI for tenants and operators. See docs/cli.md.
//
// Exit codes: 0 success; 1 the daemon refused or failed the call; 2 bad
// command line or input; 3 the daemon cannot be reached. Errors are one line
// on stderr.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/app_help.h"
#include "cli/arrays.h"
#include "cli/csv.h"
#include "cli/deferred_descriptors.h"
#include "cli/format.h"
#include "cli/list_window.h"
#include "cli/output.h"
#include "cli/power_text.h"
#include "cli/sched_text.h"
#include "cli/session.h"
#include "cli/session_path.h"
#include "cli/session_wire.h"
#include "cli/submit_wait.h"
#include "cli/unary_methods.h"
#include "cli/watch_commands.h"
#include "common/cli_parse.h"
#include "common/endpoints.h"
#include "common/mutex_mode.h"
#include "common/proto_time.h"
#include "common/resources.h"
#include "common/units.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/auth.grpc.pb.h"
#include "joule/v1/joule.grpc.pb.h"
#include "transport/channel.h"

namespace joule::cli {
namespace {

struct Globals {
  std::string server;
  std::string output = "table";
  std::string as_tenant;
  std::string timeout = "30s";
  transport::ClientOptions transport;  // TLS, token (server copied in)
  std::string session;  // $JOULE_SESSION in use (cli/session.h), or empty
};

// Raised through main() as an exit code; the message is already printed.
struct Exit {
  int code;
};

[[noreturn]] void Fail(int code, const std::string& message) {
  std::fprintf(stderr, "joulectl: %s\n", message.c_str());
  throw Exit{code};
}

void FailStatus(const absl::Status& s) { Fail(2, std::string(s.message())); }

class Client {
 public:
  explicit Client(const Globals& g)
      : g_(g),
        follower_(g.session.empty() ? ServerList(g.server)
                                    : std::vector<std::string>{g.session}) {
    // Through a session, unary calls go in frames on its frames socket
    // (cli/session_wire.h): no gRPC in this process unless a stream (or a
    // session without that socket) needs the channel.
    if (g_.session.empty()) Connect(follower_.Current());
  }
  // (Re)creates the channel and stubs for `server`, one of --server's
  // endpoints or the leader a standby named (common/endpoints.h).
  void Connect(const std::string& server) {
    transport::ClientOptions to = g_.transport;
    to.server = server;
    to.as_tenant = g_.as_tenant;
    to.session = g_.session;
    auto client = transport::Client::Open(to);
    if (!client.ok()) FailStatus(client.status());
    transport_ = std::move(*client);
    channel_ = transport_.channel();
    auth_ = v1::AuthService::NewStub(channel_);
    jobs_ = v1::JobService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
    billing_ = v1::BillingService::NewStub(channel_);
  }

  template <typename Stub, typename Req, typename Resp>
  void Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&,
                                         Resp*),
            Stub* stub, const Req& req, Resp* resp) {
    grpc::Status s = CallStatus(method, stub, req, resp);
    if (!s.ok()) FailRpc(s);
  }
  template <typename Stub, typename Req, typename Resp>
  grpc::Status CallStatus(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                       const Req&, Resp*),
                          Stub* stub, const Req& req, Resp* resp) {
    auto timeout = ParseNonNegativeDuration(g_.timeout, "--timeout");
    if (!timeout.ok()) FailStatus(timeout.status());
    if (!g_.session.empty()) {
      if (FrameClient* f = Frames()) {
        return FramedCall<Stub>(f, *timeout, req, resp);
      }
      EnsureChannel();
      stub = Same(stub);
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(*timeout));
    transport_.Authorize(&ctx);
    grpc::Status s = (stub->*method)(&ctx, req, resp);
    // Several endpoints: a standby or a dead jouled sends us on to the next
    // one (or the leader it names), each tried about once.
    if (s.ok() || follower_.size() < 2 || ++tries_ > 2 * follower_.size() ||
        !follower_.OnFailure(s.error_code(), s.error_message())) {
      return s;
    }
    Connect(follower_.Current());
    return CallStatus(method, Same(stub), req, resp);
  }
  // Every page of a paged list call (page_size / page_token), from
  // req's page_token on, as one response: the pages' repeated fields
  // concatenated in order (protobuf MergeFrom), next_page_token cleared.
  template <typename Stub, typename Req, typename Resp>
  Resp AllPages(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&,
                                             Resp*),
                Stub* stub, Req req) {
    Resp all;
    do {
      Resp page;
      Call(method, stub, req, &page);
      req.set_page_token(page.next_page_token());
      page.clear_next_page_token();
      all.MergeFrom(page);
    } while (!req.page_token().empty());
    return all;
  }
  // A unary call in frames: the method named by Stub's service and the
  // request and response types (unary_methods.h, generated), the
  // deadline, --as-tenant; the answer as the grpc::Status a channel's
  // call would give.
  template <typename Stub, typename Req, typename Resp>
  grpc::Status FramedCall(FrameClient* f, absl::Duration timeout,
                          const Req& req, Resp* resp) {
    WireRequest w;
    w.method = UnaryMethod<Stub, Req, Resp>::kName;
    w.timeout_us = absl::ToInt64Microseconds(timeout);
    if (!g_.as_tenant.empty()) {
      w.metadata.emplace_back(transport::kAsTenantKey, g_.as_tenant);
    }
    if (!req.SerializeToString(&w.payload)) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "cannot serialize the request");
    }
    // The session ends the call at the deadline; a second more here
    // lets its answer (which says why) arrive.
    WireResponse r = f->Call(w, absl::Now() + timeout + absl::Seconds(1));
    if (r.code != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(r.code), r.message);
    }
    if (!resp->ParseFromString(r.payload)) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "cannot parse the session's answer");
    }
    return grpc::Status::OK;
  }
  // The frames connection to the session, tried once; nullptr without.
  FrameClient* Frames() {
    if (!frames_tried_) {
      frames_tried_ = true;
      frames_ = FrameClient::Connect(FramesPath(g_.session));
    }
    return frames_.get();
  }
  void EnsureChannel() {
    if (channel_ == nullptr) Connect(follower_.Current());
  }
  template <typename Stub>
  Stub* Same(Stub*) {
    if constexpr (std::is_same_v<Stub, v1::AuthService::Stub>) return auth();
    if constexpr (std::is_same_v<Stub, v1::JobService::Stub>) return jobs();
    if constexpr (std::is_same_v<Stub, v1::AdminService::Stub>) return admin();
    if constexpr (std::is_same_v<Stub, v1::BillingService::Stub>) {
      return billing();
    }
  }
  static std::vector<std::string> ServerList(const std::string& server) {
    auto list = ParseEndpoints(server, "--server");
    if (!list.ok()) FailStatus(list.status());
    return *list;
  }
  [[noreturn]] void FailRpc(const grpc::Status& s) {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      std::string why = s.error_message();
      if (absl::StrContains(absl::AsciiStrToLower(why), "connection refused")) {
        why = "connection refused";
      }
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
          absl::StrContains(why, "connect")) {
        if (!g_.session.empty()) {
          Fail(3, SessionUnreachable(g_.session, s.error_message()));
        }
        Fail(3, absl::StrCat("cannot reach jouled at ", g_.server, ": ", why));
      }
    }
    Fail(1, s.error_message());
  }

  // What cli/watch_commands.h needs of this connection.
  WatchConnection Watch() {
    EnsureChannel();
    WatchConnection w;
    w.channel = channel_;
    w.authorize = [this](grpc::ClientContext* ctx) {
      transport_.Authorize(ctx);
    };
    w.server = g_.server;
    w.session = g_.session;
    auto timeout = ParseNonNegativeDuration(g_.timeout, "--timeout");
    if (timeout.ok()) w.call_timeout = *timeout;
    return w;
  }

  v1::AuthService::Stub* auth() { return auth_.get(); }
  v1::JobService::Stub* jobs() { return jobs_.get(); }
  v1::AdminService::Stub* admin() { return admin_.get(); }
  v1::BillingService::Stub* billing() { return billing_.get(); }

 private:
  const Globals& g_;
  transport::Client transport_;
  EndpointFollower follower_;
  size_t tries_ = 0;
  bool frames_tried_ = false;
  std::unique_ptr<FrameClient> frames_;  // null: calls go over channel_
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AuthService::Stub> auth_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::BillingService::Stub> billing_;
};

// -o json/yaml (and csv where the command has no table, `csv_too`): prints
// `m` in that format and returns true (cli/output.h).
bool Structured(const Globals& g, const google::protobuf::Message& m,
                bool csv_too = false) {
  return PrintStructured(m, csv_too);
}
constexpr bool kNoTable = true;
// Text around a table (titles, totals) is left out of CSV.
bool Csv() { return CurrentOutputFormat() == OutputFormat::kCsv; }

void Print(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

std::string Age(const google::protobuf::Duration& d, bool set) {
  if (!set) return "never";
  const absl::Duration a = FromProtoDuration(d);
  return absl::StrCat(absl::ToInt64Milliseconds(a) / 100 / 10.0, "s");
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProtoTime(t),
                          absl::UTCTimeZone());
}

int64_t ParsePowerFlag(const std::string& text, const std::string& flag) {
  auto mw = ParsePowerMw(text, flag);
  if (!mw.ok()) FailStatus(mw.status());
  return *mw;
}

absl::Time ParseTimeFlag(const std::string& text, const std::string& flag) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return t;
  if (absl::ParseTime("%Y-%m-%d", text, &t, &err)) return t;
  Fail(2, absl::StrCat(flag, ": \"", text,
                       "\" is not a time; want RFC 3339 (2026-11-01T12:00:00Z) "
                       "or a date (2026-11-01)"));
}

// The --since cutoff of a list command (exit 2 on a bad duration).
absl::Time Cutoff(const ListWindow& w) {
  auto t = SinceCutoff(w.since, absl::Now());
  if (!t.ok()) FailStatus(t.status());
  return *t;
}

// ------------------------------------------------------------- nodes ----

void NodeList(Client& c, const Globals& g, const ListWindow& w = {}) {
  const absl::Time cutoff = Cutoff(w);  // a bad --since: exit 2 first
  v1::ListNodesRequest req;
  v1::ListNodesResponse resp =
      c.AllPages(&v1::AdminService::Stub::ListNodes, c.admin(), req);
  // Registered within --since; the first --limit by name.
  ApplyWindow(
      resp.mutable_nodes(), cutoff, w.limit, /*latest=*/false,
      [](const v1::Node& n) { return FromProtoTime(n.registered_time()); });
  if (Structured(g, resp)) return;
  Table t({"NAME", "STATE", "DOMAIN", "GPUS", "POWER", "LIMIT", "JOBS",
           "LAST REPORT", "BACKEND", "BASE", "ENERGY", "ADDRESS"});
  t.WideOnly({"BACKEND", "BASE", "ENERGY", "ADDRESS"});
  for (const auto& n : resp.nodes()) {
    std::string state =
        n.state() == v1::NODE_STATE_READY ? "ready" : "unreachable";
    if (n.drained()) state += ",drained";
    std::string model = n.gpus_size() > 0 ? n.gpus(0).model() : "-";
    t.Add({n.name(), state, n.domain(),
           absl::StrCat(model, " x", n.gpus_size()), FormatPower(n.power_mw()),
           FormatPower(n.power_limit_mw()), absl::StrCat(n.running_jobs_size()),
           Age(n.report_age(), n.has_last_report_time()), n.gpu_backend(),
           FormatPower(n.base_power_mw()),
           absl::StrCat(FormatKwh(n.energy_mj()), " kWh"),
           n.address().empty() ? "-" : n.address()});
  }
  Print(t.Render());
}

void NodeShow(Client& c, const Globals& g, const std::string& name) {
  v1::GetNodeRequest req;
  req.set_name(name);
  v1::Node n;
  c.Call(&v1::AdminService::Stub::GetNode, c.admin(), req, &n);
  if (Structured(g, n, kNoTable)) return;
  Print(absl::StrCat(
      "node ", n.name(), "  state ",
      n.state() == v1::NODE_STATE_READY ? "ready" : "unreachable",
      n.drained() ? " (drained)" : "", "  domain ", n.domain(), "  backend ",
      n.gpu_backend(), "\npower ", FormatPower(n.power_mw()), " (base ",
      FormatPower(n.base_power_mw()), ")  limit ",
      FormatPower(n.power_limit_mw()), "  energy ", FormatKwh(n.energy_mj()),
      " kWh  last report ", Age(n.report_age(), n.has_last_report_time()),
      " ago\n\n"));
  Table t({"GPU", "UUID", "MODEL", "UTIL", "MEM USED/TOTAL", "TEMP", "POWER",
           "LIMIT", "RANGE", "ENERGY", "HEALTH", "JOB"});
  for (const auto& gpu : n.gpus()) {
    t.Add({absl::StrCat(gpu.index()), gpu.uuid(), gpu.model(),
           absl::StrCat(gpu.utilization_pct(), "%"),
           absl::StrCat(gpu.memory_used_bytes() >> 30, "/",
                        gpu.memory_total_bytes() >> 30, " GiB"),
           absl::StrCat(gpu.temperature_c(), "C"), FormatPower(gpu.power_mw()),
           FormatPower(gpu.power_limit_mw()),
           absl::StrCat(FormatPower(gpu.min_power_limit_mw()), "..",
                        FormatPower(gpu.max_power_limit_mw())),
           absl::StrCat(FormatKwh(gpu.energy_mj()), " kWh"),
           gpu.healthy() ? "ok"
                         : absl::StrCat("UNHEALTHY: ", gpu.health_detail()),
           gpu.job_id().empty() ? "-" : gpu.job_id()});
  }
  Print(t.Render());
}

void NodeDrain(Client& c, const Globals& g, const std::string& name,
               bool drain) {
  v1::DrainNodeRequest req;
  req.set_name(name);
  req.set_drain(drain);
  v1::Node n;
  c.Call(&v1::AdminService::Stub::DrainNode, c.admin(), req, &n);
  if (Structured(g, n, kNoTable)) return;
  Print(absl::StrCat("node ", name, drain ? " drained" : " undrained", "\n"));
}

void NodeRemove(Client& c, const Globals& g, const std::string& name) {
  v1::RemoveNodeRequest req;
  req.set_name(name);
  v1::RemoveNodeResponse resp;
  c.Call(&v1::AdminService::Stub::RemoveNode, c.admin(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  Print(absl::StrCat("node ", name, " removed\n"));
}

// -------------------------------------------------------------- jobs ----

struct SubmitFlags {
  std::string tenant, name, gpu_model, cls = "on-demand", power, min_power,
                                       max_runtime, request_id, after;
  std::string power_mode;
  std::string array;  // --array A-B[%MAX] (cli/arrays.h)
  bool wait = false;  // --wait: until the job (every task) has ended
  uint32_t gpus = 0, nodes = 1;
  int32_t priority = 0;
  double sim_load = 0;
  std::vector<std::string> env, command;
  std::string memory, cpus;  // per node, enforced in the job's cgroup
  std::string preempt_signal, preempt_grace;  // the preemption notice
};

// `job submit --wait`: waits on the WatchEvents stream (cli/submit_wait.h)
// until the job (every task of an array) has ended; if the stream cannot
// be used, polls, 1 ms apart at first, backing off to 50 ms. Exits 0 if it
// (each task) succeeded, else 1 with the first failure on stderr.
void WaitForEnd(Client& c, const v1::SubmitJobResponse& submitted) {
  std::fflush(stdout);
  auto ended = [](v1::JobState s) {
    return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
           s == v1::JOB_STATE_CANCELLED;
  };
  auto read = [&] {
    std::vector<v1::Job> jobs;
    if (submitted.array_id().empty()) {
      v1::GetJobRequest req;
      req.set_id(submitted.job().id());
      jobs.emplace_back();
      c.Call(&v1::JobService::Stub::GetJob, c.jobs(), req, &jobs.back());
    } else {
      v1::ListJobsRequest req;
      req.set_array_id(submitted.array_id());
      const v1::ListJobsResponse all =
          c.AllPages(&v1::JobService::Stub::ListJobs, c.jobs(), req);
      jobs.assign(all.jobs().begin(), all.jobs().end());
    }
    return jobs;
  };
  // A plain job's changes only; an array's tasks are among the caller's.
  const std::optional<std::vector<v1::Job>> streamed = WaitOnStream(
      c.Watch(), submitted.array_id().empty() ? submitted.job().id() : "",
      read);
  absl::Duration pause = absl::Milliseconds(1);
  for (;;) {
    const std::vector<v1::Job> jobs = streamed ? *streamed : read();
    if (std::all_of(jobs.begin(), jobs.end(),
                    [&](const v1::Job& j) { return ended(j.state()); })) {
      for (const v1::Job& j : jobs) {
        if (j.state() != v1::JOB_STATE_SUCCEEDED) {
          Fail(1, absl::StrCat("job ", j.id(), " ", JobStateName(j.state()),
                               ": ", j.reason()));
        }
      }
      return;
    }
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(50));
  }
}

void JobSubmit(Client& c, const Globals& g, const SubmitFlags& f) {
  v1::SubmitJobRequest req;
  v1::JobSpec* s = req.mutable_spec();
  s->set_tenant(f.tenant.empty() ? g.as_tenant : f.tenant);
  s->set_name(f.name);
  for (const auto& a : f.command) s->add_command(a);
  for (const auto& kv : f.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      Fail(2, absl::StrCat("--env: \"", kv, "\" is not KEY=VALUE"));
    }
    (*s->mutable_env())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (f.gpus == 0) Fail(2, "--gpus: must be at least 1");
  s->set_gpus_per_node(f.gpus);
  if (f.nodes == 0) Fail(2, "--nodes: must be at least 1");
  s->set_nodes(f.nodes);
  s->set_gpu_model(f.gpu_model);
  auto cls = ParseServiceClass(f.cls);
  if (!cls.ok()) FailStatus(cls.status());
  s->set_service_class(*cls);
  s->set_priority(f.priority);
  if (!f.power.empty())
    s->set_power_limit_mw(ParsePowerFlag(f.power, "--power"));
  if (!f.min_power.empty()) {
    s->set_min_power_limit_mw(ParsePowerFlag(f.min_power, "--min-power"));
  }
  if (!f.max_runtime.empty()) {
    auto d = ParseNonNegativeDuration(f.max_runtime, "--max-runtime");
    if (!d.ok()) FailStatus(d.status());
    *s->mutable_max_runtime() = ToProtoDuration(*d);
  }
  if (f.power_mode == "efficiency") {
    s->set_power_mode(v1::POWER_MODE_EFFICIENCY);
  } else if (f.power_mode == "performance") {
    s->set_power_mode(v1::POWER_MODE_PERFORMANCE);
  } else if (!f.power_mode.empty()) {
    Fail(2, absl::StrCat("--power-mode: \"", f.power_mode,
                         "\" is not performance or efficiency"));
  }
  if (f.sim_load < 0 || f.sim_load > 1)
    Fail(2, "--sim-load: must be within 0..1");
  s->set_sim_load(f.sim_load);
  auto after = ParseAfter(f.after);
  if (!after.ok()) FailStatus(after.status());
  for (const std::string& id : *after) s->add_after(id);
  if (!f.memory.empty()) {
    auto m = joule::ParseMemoryBytes("--memory", f.memory);
    if (!m.ok()) FailStatus(m.status());
    s->set_memory_bytes(*m);
  }
  if (!f.cpus.empty()) {
    auto m = joule::ParseCpuMillis("--cpus", f.cpus);
    if (!m.ok()) FailStatus(m.status());
    s->set_cpu_millis(*m);
  }
  if (absl::Status st = ApplyPreemptFlags(f.preempt_signal, f.preempt_grace, s);
      !st.ok()) {
    FailStatus(st);
  }
  req.set_request_id(f.request_id);
  if (!f.array.empty()) {
    auto array = ParseArrayFlag(f.array);
    if (!array.ok()) FailStatus(array.status());
    *req.mutable_array() = *array;
  }
  v1::SubmitJobResponse resp;
  c.Call(&v1::JobService::Stub::SubmitJob, c.jobs(), req, &resp);
  if (Structured(g, resp, kNoTable)) {
    if (f.wait) WaitForEnd(c, resp);
    return;
  }
  Print((resp.array_id().empty() ? resp.job().id() : resp.array_id()) + "\n");
  if (f.wait) WaitForEnd(c, resp);
}

void JobList(Client& c, const Globals& g, const std::string& tenant,
             const std::string& state, uint32_t limit = 0,
             const std::string& since = "", const std::string& array_id = "",
             bool expand = false) {
  const absl::Time cutoff = Cutoff({since, limit});  // bad --since: exit 2
  v1::ListJobsRequest req;
  req.set_tenant(tenant);
  req.set_array_id(array_id);
  // --state S1,S2,...: one ListJobs per state, merged in id order.
  std::vector<v1::JobState> states;
  for (absl::string_view one : absl::StrSplit(state, ',', absl::SkipEmpty())) {
    auto st = ParseJobState(std::string(one));
    if (!st.ok()) FailStatus(st.status());
    states.push_back(*st);
  }
  if (states.empty()) states.push_back(v1::JOB_STATE_UNSPECIFIED);
  v1::ListJobsResponse resp;
  for (v1::JobState st : states) {
    req.set_state(st);
    req.clear_page_token();
    resp.mutable_jobs()->MergeFrom(
        c.AllPages(&v1::JobService::Stub::ListJobs, c.jobs(), req).jobs());
  }
  if (states.size() > 1) {  // the daemon's order: by id
    std::sort(
        resp.mutable_jobs()->begin(), resp.mutable_jobs()->end(),
        [](const v1::Job& a, const v1::Job& b) { return a.id() < b.id(); });
  }
  // Submitted within --since; the latest --limit.
  ApplyWindow(resp.mutable_jobs(), cutoff, limit,
              /*latest=*/true,
              [](const v1::Job& j) { return FromProtoTime(j.submit_time()); });
  if (Structured(g, resp)) return;
  Table t({"ID", "TENANT", "NAME", "STATE", "CLASS", "GPUS", "NODES", "REASON",
           "PRIORITY", "MODEL", "POWER/GPU", "ATTEMPT", "SUBMITTED"});
  t.WideOnly({"PRIORITY", "MODEL", "POWER/GPU", "ATTEMPT", "SUBMITTED"});
  // Wide columns come from the row's job; a folded array row's from its
  // first task listed.
  absl::flat_hash_map<std::string, const v1::Job*> by_id, first_task;
  for (const auto& j : resp.jobs()) {
    by_id[j.id()] = &j;
    if (!j.array_id().empty()) first_task.try_emplace(j.array_id(), &j);
  }
  for (auto& row : JobRows(resp.jobs(), expand)) {
    const v1::Job* j = nullptr;
    if (auto it = by_id.find(row[0]); it != by_id.end()) {
      j = it->second;
    } else if (auto f = first_task.find(row[0].substr(0, row[0].find('_')));
               f != first_task.end()) {
      j = f->second;
    }
    if (j != nullptr) {
      row.push_back(absl::StrCat(j->spec().priority()));
      row.push_back(j->spec().gpu_model().empty() ? "any"
                                                  : j->spec().gpu_model());
      row.push_back(j->power_limit_mw() > 0 ? FormatPower(j->power_limit_mw())
                                            : "TDP");
      row.push_back(absl::StrCat(j->attempt()));
      row.push_back(TimeText(j->submit_time()));
    } else {
      row.insert(row.end(), 5, "-");
    }
    t.Add(std::move(row));
  }
  Print(t.Render());
}

void JobShow(Client& c, const Globals& g, const std::string& id) {
  v1::GetJobRequest req;
  req.set_id(id);
  v1::Job j;
  c.Call(&v1::JobService::Stub::GetJob, c.jobs(), req, &j);
  if (Structured(g, j, kNoTable)) return;
  const auto& s = j.spec();
  std::string out = absl::StrCat(
      "job ", j.id(), "  ", JobStateName(j.state()), "\n",
      "reason:   ", j.reason(), "\n", "tenant:   ", s.tenant(),
      "  name: ", s.name(), "\nclass:    ", ServiceClassName(s.service_class()),
      " (runs as ", ServiceClassName(j.effective_class()), ")  priority ",
      s.priority(), "\nshape:    ", s.nodes(), " node(s) x ", s.gpus_per_node(),
      " GPU(s) ", s.gpu_model().empty() ? "any model" : s.gpu_model(),
      "\npower:    per GPU ",
      j.power_limit_mw() > 0 ? FormatPower(j.power_limit_mw()) : "model TDP",
      ", min ",
      j.min_power_limit_mw() > 0 ? FormatPower(j.min_power_limit_mw())
                                 : "= power",
      "\nlimit:    ", TimeLimitText(j), "\npreempt:  ", PreemptText(s),
      j.held() ? "  (held: job release ID)" : "",
      s.after().empty() ? "" : "\nafter:    ", absl::StrJoin(s.after(), ", "),
      ContractText(j).empty() ? "" : "\ncontract: ", ContractText(j),
      s.power_mode() == v1::POWER_MODE_EFFICIENCY ? ", mode efficiency" : "",
      EfficiencyKneeText(j).empty() ? "" : "\nknee:     ",
      EfficiencyKneeText(j), "\ncommand:  ", absl::StrJoin(s.command(), " "),
      "\nsubmitted: ", TimeText(j.submit_time()), "  attempt ", j.attempt(),
      "  exit code ", j.exit_code(), "\n");
  for (const auto& a : j.allocations()) {
    absl::StrAppend(&out, "  on ", a.node(), " GPUs ",
                    absl::StrJoin(a.gpu_indices(), ","), " at ",
                    FormatPower(a.power_limit_mw()), "/GPU\n");
  }
  out += "history:\n";
  for (const auto& h : j.history()) {
    absl::StrAppend(&out, "  ", TimeText(h.time()), "  ",
                    JobStateName(h.state()), "  (attempt ", h.attempt(), ") ",
                    h.reason(), "\n");
  }
  for (const auto& a : j.attempts()) {
    absl::StrAppend(&out, "attempt ", a.attempt(), ": ",
                    TimeText(a.start_time()), " .. ", TimeText(a.end_time()),
                    "  ", a.outcome(), "  energy ", FormatKwh(a.energy_mj()),
                    " kWh\n");
  }
  // How each attempt's GPU-seconds were billed (best effort).
  v1::GetJobBillingRequest breq;
  breq.set_job_id(j.id());
  v1::GetJobBillingResponse bresp;
  if (c.CallStatus(&v1::BillingService::Stub::GetJobBilling, c.billing(), breq,
                   &bresp)
          .ok() &&
      !bresp.attempts().empty()) {
    out += "billing:\n";
    for (const auto& b : bresp.attempts()) out += AttemptBillingText(b);
  }
  Print(out);
}

void JobCancel(Client& c, const Globals& g, const std::string& id) {
  v1::CancelJobRequest req;
  req.set_id(id);
  v1::Job j;
  c.Call(&v1::JobService::Stub::CancelJob, c.jobs(), req, &j);
  if (Structured(g, j, kNoTable)) return;
  Print(absl::StrCat(id, " ", JobStateName(j.state()), ": ", j.reason(), "\n"));
}

// `job hold` / `job release`.
void JobHold(Client& c, const Globals& g, const std::string& id, bool hold) {
  v1::Job j;
  if (hold) {
    v1::HoldJobRequest req;
    req.set_id(id);
    c.Call(&v1::JobService::Stub::HoldJob, c.jobs(), req, &j);
  } else {
    v1::ReleaseJobRequest req;
    req.set_id(id);
    c.Call(&v1::JobService::Stub::ReleaseJob, c.jobs(), req, &j);
  }
  if (Structured(g, j, kNoTable)) return;
  Print(absl::StrCat(id, " ", hold ? "held" : "released", ": ", j.reason(),
                     "\n"));
}

void JobLogs(Client& c, const Globals& g, const std::string& id,
             uint32_t attempt) {
  v1::GetJobLogsRequest req;
  req.set_id(id);
  req.set_attempt(attempt);
  v1::GetJobLogsResponse resp;
  c.Call(&v1::JobService::Stub::GetJobLogs, c.jobs(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  Print(resp.data());
}

// ------------------------------------------------------------- power ----

void PowerTree(Client& c, const Globals& g) {
  v1::GetPowerTreeResponse resp;
  c.Call(&v1::AdminService::Stub::GetPowerTree, c.admin(),
         v1::GetPowerTreeRequest(), &resp);
  if (Structured(g, resp)) return;
  Table t({"DOMAIN", "KIND", "NODES", "CAP", "COMMITTED", "MEASURED",
           "HEADROOM", "REPORTED", "PARENT"});
  t.WideOnly({"PARENT"});
  for (const auto& d : resp.domains()) {
    t.Add({std::string(2 * d.depth(), ' ') + d.name(), d.kind(),
           absl::StrCat(d.nodes()), FormatPower(d.cap_mw()),
           FormatPower(d.committed_mw()), FormatPower(d.measured_mw()),
           FormatPower(d.headroom_mw()), FormatPower(d.reported_mw()),
           d.parent().empty() ? "-" : d.parent()});
  }
  if (!Csv()) {
    Print(absl::StrCat("admission mode: ", resp.admission_mode(), "\n"));
  }
  Print(t.Render());
}

// What a cap would throttle and preempt (PreviewPowerCap) as a table.
std::string CapPlan(const v1::PowerCapPreview& p) {
  if (p.actions().empty()) return "no throttles or preemptions\n";
  Table t({"ACTION", "JOB", "TENANT", "NEW LIMIT/GPU", "REASON"});
  for (const auto& a : p.actions()) {
    t.Add({a.kind(), a.job_id(), a.tenant().empty() ? "-" : a.tenant(),
           a.kind() == "throttle" ? FormatPower(a.new_limit_mw()) : "-",
           a.reason()});
  }
  return t.Render();
}

void PowerSetCap(Client& c, const Globals& g, const std::string& domain,
                 const std::string& watts, const std::string& reason,
                 bool dry_run = false, bool yes = false) {
  v1::SetPowerCapRequest req;
  req.set_domain(domain);
  req.set_cap_mw(ParsePowerFlag(watts, "WATTS"));
  req.set_reason(reason);
  // A cut far below the measured draw (under half of it) or one that
  // preempts asks for --yes; --dry-run prints the plan and changes nothing.
  if (dry_run || !yes) {
    v1::PowerCapPreview p;
    grpc::Status s = c.CallStatus(&v1::AdminService::Stub::PreviewPowerCap,
                                  c.admin(), req, &p);
    if (!s.ok() &&
        (dry_run || (s.error_code() != grpc::StatusCode::PERMISSION_DENIED &&
                     s.error_code() != grpc::StatusCode::UNIMPLEMENTED))) {
      c.FailRpc(s);
    }
    if (s.ok()) {
      int preempts = 0;
      for (const auto& a : p.actions()) preempts += a.kind() == "preempt";
      const int64_t measured = p.domain().measured_mw();
      const bool far_below = req.cap_mw() < measured / 2;
      if (dry_run) {
        if (Structured(g, p, kNoTable)) return;
        Print(absl::StrCat("domain ", domain, ": cap ",
                           FormatPower(req.cap_mw()), " (measured ",
                           FormatPower(measured), ", committed ",
                           FormatPower(p.domain().committed_mw()),
                           "); nothing changed (--dry-run)\n", CapPlan(p)));
        return;
      }
      if (preempts > 0 || far_below) {
        std::fprintf(stderr, "%s", CapPlan(p).c_str());
        Fail(2,
             absl::StrCat(
                 "cap ", FormatPower(req.cap_mw()), " on ", domain,
                 far_below ? absl::StrCat(" is far below its measured draw ",
                                          FormatPower(measured))
                           : "",
                 preempts > 0 ? absl::StrCat(far_below ? " and" : "",
                                             " preempts ", preempts, " job(s)")
                              : "",
                 "; nothing changed: add --yes to set it"));
      }
    }
  }
  v1::PowerDomain d;
  c.Call(&v1::AdminService::Stub::SetPowerCap, c.admin(), req, &d);
  if (!d.warning().empty()) {
    std::cerr << "joulectl: warning: " << d.warning() << "\n";
  }
  if (Structured(g, d, kNoTable)) return;
  Print(absl::StrCat("domain ", d.name(), " cap ", FormatPower(d.cap_mw()),
                     " (measured ", FormatPower(d.measured_mw()),
                     ", committed ", FormatPower(d.committed_mw()), ")\n"));
}

void ConfigReload(Client& c, const Globals& g) {
  v1::ReloadConfigResponse resp;
  c.Call(&v1::AdminService::Stub::ReloadConfig, c.admin(),
         v1::ReloadConfigRequest(), &resp);
  if (Structured(g, resp, kNoTable)) return;
  if (resp.changes().empty()) {
    return Print(absl::StrCat("reloaded ", resp.path(), ": no change\n"));
  }
  Print(absl::StrCat("reloaded ", resp.path(), ": ",
                     absl::StrJoin(resp.changes(), ", "), "\n"));
}

void Events(Client& c, const Globals& g, const std::string& since,
            const std::string& kind, uint32_t limit) {
  v1::ListEventsRequest req;
  if (!since.empty()) {
    auto d = ParseNonNegativeDuration(since, "--since");
    if (!d.ok()) FailStatus(d.status());
    *req.mutable_since() = ToProtoDuration(*d);
  }
  req.set_kind(kind);
  req.set_limit(limit);
  v1::ListEventsResponse resp =
      c.AllPages(&v1::AdminService::Stub::ListEvents, c.admin(), req);
  if (Structured(g, resp)) return;
  Table t({"SEQ", "TIME", "KIND", "SUBJECT", "MESSAGE"});
  t.WideOnly({"SEQ"});
  for (const auto& e : resp.events()) {
    t.Add({absl::StrCat(e.seq()), TimeText(e.time()), e.kind(), e.subject(),
           e.message()});
  }
  Print(t.Render());
}

// ----------------------------------------------------------- tenants ----

void TenantCreate(Client& c, const Globals& g, const std::string& name,
                  uint32_t weight) {
  v1::CreateTenantRequest req;
  req.mutable_tenant()->set_name(name);
  req.mutable_tenant()->set_fair_share_weight(weight);
  v1::Tenant t;
  c.Call(&v1::AdminService::Stub::CreateTenant, c.admin(), req, &t);
  if (Structured(g, t, kNoTable)) return;
  Print(absl::StrCat("tenant ", t.name(), " created\n"));
}

void TenantList(Client& c, const Globals& g, const ListWindow& w) {
  const absl::Time cutoff = Cutoff(w);  // a bad --since: exit 2 first
  v1::ListTenantsRequest req;
  v1::ListTenantsResponse resp =
      c.AllPages(&v1::AdminService::Stub::ListTenants, c.admin(), req);
  // Created within --since; the first --limit by name.
  ApplyWindow(
      resp.mutable_tenants(), cutoff, w.limit, /*latest=*/false,
      [](const v1::Tenant& x) { return FromProtoTime(x.created_time()); });
  if (Structured(g, resp)) return;
  Table t({"TENANT", "WEIGHT", "CREATED", "USAGE", "QUOTA", "GPU-SECONDS",
           "MAX RESERVED", "MAX ON-DEMAND", "MAX SPOT", "MAX PENDING"});
  t.WideOnly({"GPU-SECONDS", "MAX RESERVED", "MAX ON-DEMAND", "MAX SPOT",
              "MAX PENDING"});
  auto bound = [](bool has, uint32_t v) {
    return has ? absl::StrCat(v) : std::string("-");
  };
  for (const auto& x : resp.tenants()) {
    const v1::TenantQuota& q = x.quota();
    t.Add({x.name(), absl::StrCat(x.fair_share_weight()),
           TimeText(x.created_time()),
           absl::StrFormat("%.1f GPU-h", x.fair_share_gpu_seconds() / 3600),
           QuotaText(q), absl::StrFormat("%.0f", x.fair_share_gpu_seconds()),
           bound(q.has_max_running_gpus_reserved(),
                 q.max_running_gpus_reserved()),
           bound(q.has_max_running_gpus_on_demand(),
                 q.max_running_gpus_on_demand()),
           bound(q.has_max_running_gpus_spot(), q.max_running_gpus_spot()),
           bound(q.has_max_pending_jobs(), q.max_pending_jobs())});
  }
  Print(t.Render());
}

void TenantSetQuota(Client& c, const Globals& g, const std::string& name,
                    const std::vector<std::string>& max_gpus,
                    int64_t max_pending) {
  v1::SetTenantQuotaRequest req;
  req.set_tenant(name);
  auto q = ParseQuotaFlags(max_gpus, max_pending);
  if (!q.ok()) FailStatus(q.status());
  *req.mutable_quota() = *q;
  v1::Tenant t;
  c.Call(&v1::AdminService::Stub::SetTenantQuota, c.admin(), req, &t);
  if (Structured(g, t, kNoTable)) return;
  Print(absl::StrCat("tenant ", t.name(), " quota: ", QuotaText(t.quota()),
                     "\n"));
}

// ----------------------------------------------------------- billing ----

// Tiers: "0.80" or "0:0.80,1000000000:0.60".
void ParseTiers(const std::string& text, const std::string& flag,
                google::protobuf::RepeatedPtrField<v1::PriceTier>* out) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    v1::PriceTier* t = out->Add();
    const size_t colon = part.find(':');
    if (colon == absl::string_view::npos) {
      t->set_price(std::string(part));
      continue;
    }
    uint64_t from = 0;
    if (!absl::SimpleAtoi(part.substr(0, colon), &from)) {
      Fail(2,
           absl::StrCat(flag, ": \"", part,
                        "\" is not FROM_TOKENS:PRICE (e.g. 1000000000:0.60)"));
    }
    t->set_from_tokens(from);
    t->set_price(std::string(part.substr(colon + 1)));
  }
}

struct PriceFlags {
  std::string kind, gpu_model, cls = "on-demand", price, model, input, output,
                               per_request, effective;
  std::string tenant;  // a tenant's rate card; empty: the list price
};

void PriceSet(Client& c, const Globals& g, const PriceFlags& f) {
  v1::SetPriceRequest req;
  v1::Price* p = req.mutable_price();
  if (f.kind == "gpu-hour") {
    if (f.gpu_model.empty())
      Fail(2, "--gpu-model: required for gpu-hour prices");
    if (f.price.empty()) Fail(2, "--price: required for gpu-hour prices");
    p->mutable_gpu_hour()->set_gpu_model(f.gpu_model);
    auto cls = ParseServiceClass(f.cls);
    if (!cls.ok()) FailStatus(cls.status());
    p->mutable_gpu_hour()->set_service_class(*cls);
    p->mutable_gpu_hour()->set_price(f.price);
  } else {
    if (f.model.empty()) Fail(2, "--model: required for inference prices");
    auto* inf = p->mutable_inference();
    inf->set_model(f.model);
    if (!f.input.empty()) ParseTiers(f.input, "--input", inf->mutable_input());
    if (!f.output.empty())
      ParseTiers(f.output, "--output", inf->mutable_output());
    inf->set_per_request(f.per_request);
  }
  if (!f.effective.empty()) {
    *p->mutable_effective_from() =
        ToProtoTime(ParseTimeFlag(f.effective, "--from"));
  }
  p->set_tenant(f.tenant);
  v1::Price out;
  c.Call(&v1::BillingService::Stub::SetPrice, c.billing(), req, &out);
  if (Structured(g, out, kNoTable)) return;
  Print(absl::StrCat("price version ", out.version(), " effective ",
                     TimeText(out.effective_from()),
                     out.tenant().empty()
                         ? ""
                         : absl::StrCat(" (rate card of ", out.tenant(), ")"),
                     "\n"));
}

void PriceList(Client& c, const Globals& g, bool history, const ListWindow& w) {
  const absl::Time cutoff = Cutoff(w);  // a bad --since: exit 2 first
  v1::ListPricesRequest req;
  req.set_include_history(history);
  v1::ListPricesResponse resp =
      c.AllPages(&v1::BillingService::Stub::ListPrices, c.billing(), req);
  // Effective within --since; the latest --limit versions.
  ApplyWindow(
      resp.mutable_prices(), cutoff, w.limit, /*latest=*/true,
      [](const v1::Price& p) { return FromProtoTime(p.effective_from()); });
  if (Structured(g, resp)) return;
  Table t({"VERSION", "EFFECTIVE", "KIND", "ITEM", "CLASS/DIRECTION", "PRICE",
           "CARD", "AGE"});
  t.WideOnly({"CARD", "AGE"});
  // Wide: whose price (the list price or a tenant's card), and how long it
  // has been in effect ("-" for a future version).
  std::string card, age;
  auto add = [&](std::vector<std::string> row) {
    row.push_back(card);
    row.push_back(age);
    t.Add(std::move(row));
  };
  auto tiers = [](const auto& ts) {
    std::vector<std::string> parts;
    for (const auto& x : ts) {
      parts.push_back(absl::StrCat(x.from_tokens(), "+:", x.price()));
    }
    return absl::StrJoin(parts, " ");
  };
  for (const auto& p : resp.prices()) {
    const std::string v = absl::StrCat(
        p.version(), p.tenant().empty() ? "" : " card:" + p.tenant());
    card = p.tenant().empty() ? "list" : p.tenant();
    const absl::Duration in_effect =
        absl::Now() - FromProtoTime(p.effective_from());
    age = in_effect < absl::ZeroDuration()
              ? "-"
              : absl::FormatDuration(absl::Trunc(in_effect, absl::Seconds(1)));
    if (p.has_gpu_hour()) {
      add({v, TimeText(p.effective_from()), "gpu-hour",
           p.gpu_hour().gpu_model(),
           ServiceClassName(p.gpu_hour().service_class()),
           absl::StrCat(p.gpu_hour().price(), " /GPU-h")});
    } else {
      const auto& inf = p.inference();
      add({v, TimeText(p.effective_from()), "inference", inf.model(), "input",
           absl::StrCat(tiers(inf.input()), " /1M tok")});
      add({v, "", "", "", "output",
           absl::StrCat(tiers(inf.output()), " /1M tok")});
      if (!inf.per_request().empty()) {
        add({v, "", "", "", "request",
             absl::StrCat(inf.per_request(), " /req")});
      }
    }
  }
  Print(t.Render());
}

struct ContractFlags {
  std::string tenant, gpu_model, start, end, rate, overage;
  uint32_t gpus = 0;
};

void ContractCreate(Client& c, const Globals& g, const ContractFlags& f) {
  v1::CreateContractRequest req;
  v1::Contract* k = req.mutable_contract();
  k->set_tenant(f.tenant);
  k->set_gpu_model(f.gpu_model);
  k->set_gpus(f.gpus);
  k->set_start_date(f.start);
  k->set_end_date(f.end);
  k->set_rate(f.rate);
  k->set_overage_rate(f.overage);
  v1::Contract out;
  c.Call(&v1::BillingService::Stub::CreateContract, c.billing(), req, &out);
  if (Structured(g, out, kNoTable)) return;
  Print(absl::StrCat("contract ", out.id(), " value USD ",
                     FormatCentsGrouped(out.value_cents()), "\n"));
}

void ContractList(Client& c, const Globals& g, const std::string& tenant,
                  const ListWindow& w) {
  const absl::Time cutoff = Cutoff(w);  // a bad --since: exit 2 first
  v1::ListContractsRequest req;
  req.set_tenant(tenant);
  v1::ListContractsResponse resp =
      c.AllPages(&v1::BillingService::Stub::ListContracts, c.billing(), req);
  // Created within --since; the latest --limit.
  ApplyWindow(
      resp.mutable_contracts(), cutoff, w.limit, /*latest=*/true,
      [](const v1::Contract& k) { return FromProtoTime(k.created_time()); });
  if (Structured(g, resp)) return;
  Table t({"ID", "TENANT", "GPU MODEL", "GPUS", "START", "END", "RATE",
           "OVERAGE", "VALUE", "DAYS", "GPU-HOURS", "CREATED"});
  t.Money({"RATE", "VALUE"});
  t.WideOnly({"DAYS", "GPU-HOURS", "CREATED"});
  auto day = [](const std::string& d) {
    absl::Time t;
    std::string err;
    return absl::ParseTime("%Y-%m-%d", d, &t, &err) ? t : absl::InfinitePast();
  };
  for (const auto& k : resp.contracts()) {
    // The term in whole days (end exclusive) and the GPU-hours it reserves.
    const int64_t days =
        absl::ToInt64Hours(day(k.end_date()) - day(k.start_date())) / 24;
    t.Add({k.id(), k.tenant(), k.gpu_model(), absl::StrCat(k.gpus()),
           k.start_date(), k.end_date(), k.rate(),
           k.overage_rate().empty() ? "on-demand" : k.overage_rate(),
           FormatCents(k.value_cents()), absl::StrCat(days),
           absl::StrCat(days * 24 * k.gpus()), TimeText(k.created_time())});
  }
  Print(t.Render());
}

struct UsageFlags {
  std::string tenant, model, time, key;
  std::string requests = "1", input, output;  // counts: digits only
};

int64_t CountFlag(const std::string& text, const std::string& flag) {
  auto n = ParseCount(text, flag);
  if (!n.ok()) FailStatus(n.status());
  return *n;
}

void UsageRecord(Client& c, const Globals& g, const UsageFlags& f) {
  v1::RecordUsageRequest req;
  v1::UsageEvent* e = req.add_events();
  e->set_tenant(f.tenant.empty() ? g.as_tenant : f.tenant);
  e->set_model(f.model);
  e->set_requests(CountFlag(f.requests, "--requests"));
  e->set_input_tokens(CountFlag(f.input, "--input-tokens"));
  e->set_output_tokens(CountFlag(f.output, "--output-tokens"));
  e->set_idempotency_key(f.key);
  *e->mutable_time() = ToProtoTime(
      f.time.empty() ? absl::Now() : ParseTimeFlag(f.time, "--time"));
  v1::RecordUsageResponse resp;
  c.Call(&v1::BillingService::Stub::RecordUsage, c.billing(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  Print(resp.accepted() > 0 ? "recorded\n" : "duplicate (already recorded)\n");
}

void UsageImport(Client& c, const Globals& g, const std::string& path,
                 uint32_t batch_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(2, absl::StrCat("FILE: cannot read ", path));
  in.seekg(0, std::ios::end);
  const int64_t file_size = static_cast<int64_t>(in.tellg());
  in.seekg(0, std::ios::beg);
  CsvReader csv(&in);
  std::vector<std::string> fields;
  absl::StatusOr<bool> got = csv.Next(&fields);
  if (!got.ok()) Fail(2, absl::StrCat(path, ": ", got.status().message()));
  if (!*got) Fail(2, absl::StrCat(path, ": line 1: empty file; want a header"));
  absl::StatusOr<UsageColumns> cols = ParseUsageHeader(fields);
  if (!cols.ok()) Fail(2, absl::StrCat(path, ": ", cols.status().message()));
  uint64_t added = 0, duplicates = 0, rejected = 0, rows = 0;
  std::vector<std::string> errors;
  std::vector<std::pair<int, v1::UsageEvent>> batch;
  auto flush = [&] {
    while (!batch.empty()) {
      v1::RecordUsageRequest req;
      for (const auto& [n, e] : batch) *req.add_events() = e;
      v1::RecordUsageResponse resp;
      grpc::Status s = c.CallStatus(&v1::BillingService::Stub::RecordUsage,
                                    c.billing(), req, &resp);
      if (s.ok()) {
        added += resp.accepted();
        duplicates += resp.duplicates();
        batch.clear();
        return;
      }
      const int idx = EventIndexInMessage(s.error_message());
      if ((s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
           s.error_code() == grpc::StatusCode::ALREADY_EXISTS) &&
          idx >= 0 && idx < static_cast<int>(batch.size())) {
        // Drop the bad row, keep the rest of the batch.
        ++rejected;
        errors.push_back(
            absl::StrCat("line ", batch[idx].first, ": ", s.error_message()));
        batch.erase(batch.begin() + idx);
        continue;
      }
      c.FailRpc(s);
    }
  };
  // A progress line on stderr every 2 s once an import takes that long.
  const absl::Time started = absl::Now();
  absl::Time last_progress = started;
  while (true) {
    got = csv.Next(&fields);
    if (!got.ok()) {
      // A malformed record ends the file: nothing after it can be trusted.
      ++rejected;
      errors.push_back(std::string(got.status().message()));
      break;
    }
    if (!*got) break;
    if (fields.size() == 1 && absl::StripAsciiWhitespace(fields[0]).empty()) {
      continue;  // blank line
    }
    ++rows;
    auto e = ParseUsageRow(fields, *cols, csv.record_line());
    if (!e.ok()) {
      ++rejected;
      errors.push_back(std::string(e.status().message()));
      continue;
    }
    batch.emplace_back(csv.record_line(), std::move(*e));
    if (batch.size() >= batch_size) flush();
    const absl::Time now = absl::Now();
    if (now - last_progress >= absl::Seconds(2)) {
      last_progress = now;
      std::fprintf(stderr,
                   "joulectl: %s: %llu rows read (%lld%%), new %llu, "
                   "duplicate %llu, rejected %llu\n",
                   path.c_str(), static_cast<unsigned long long>(rows),
                   static_cast<long long>(
                       file_size > 0 ? csv.bytes() * 100 / file_size : 100),
                   static_cast<unsigned long long>(added),
                   static_cast<unsigned long long>(duplicates),
                   static_cast<unsigned long long>(rejected));
    }
  }
  flush();
  if (CurrentOutputFormat() == OutputFormat::kJson) {
    Print(absl::StrCat("{\"new\": ", added, ", \"duplicate\": ", duplicates,
                       ", \"rejected\": ", rejected, "}\n"));
  } else if (CurrentOutputFormat() == OutputFormat::kYaml) {
    Print(absl::StrCat("new: ", added, "\nduplicate: ", duplicates,
                       "\nrejected: ", rejected, "\n"));
  } else if (CurrentOutputFormat() == OutputFormat::kCsv) {
    Print(absl::StrCat("new,duplicate,rejected\n", added, ",", duplicates, ",",
                       rejected, "\n"));
  } else {
    Print(absl::StrCat("new ", added, ", duplicate ", duplicates, ", rejected ",
                       rejected, "\n"));
  }
  for (size_t i = 0; i < errors.size() && i < 20; ++i) {
    std::fprintf(stderr, "joulectl: rejected %s\n", errors[i].c_str());
  }
  if (rejected > 0) throw Exit{1};
}

void Statement(Client& c, const Globals& g, const std::string& tenant,
               const std::string& period) {
  v1::GetStatementRequest req;
  req.set_tenant(tenant.empty() ? g.as_tenant : tenant);
  req.set_period(period);
  v1::Statement s;
  c.Call(&v1::BillingService::Stub::GetStatement, c.billing(), req, &s);
  if (Structured(g, s)) return;
  if (CurrentOutputFormat() == OutputFormat::kCsv) {
    return Print(StatementCsv(s));
  }
  Print(StatementTable(s));
}

void Finalize(Client& c, const Globals& g, const std::string& period) {
  v1::FinalizePeriodRequest req;
  req.set_period(period);
  v1::FinalizePeriodResponse resp;
  c.Call(&v1::BillingService::Stub::FinalizePeriod, c.billing(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  for (const auto& s : resp.statements()) {
    Print(absl::StrCat(s.number(), "  ", s.tenant(), "  USD ",
                       FormatCentsGrouped(s.total_cents()), "\n"));
  }
  Print(absl::StrCat(resp.statements_size(), " statement(s) finalized for ",
                     period, "\n"));
}

void Backlog(Client& c, const Globals& g, const std::string& as_of) {
  v1::GetBacklogRequest req;
  if (!as_of.empty()) {
    *req.mutable_as_of() = ToProtoTime(ParseTimeFlag(as_of, "--as-of"));
  }
  v1::GetBacklogResponse resp;
  c.Call(&v1::BillingService::Stub::GetBacklog, c.billing(), req, &resp);
  if (Structured(g, resp)) return;
  if (!Csv()) {
    Print(absl::StrCat("Reserved-contract backlog (RPO) as of ",
                       TimeText(resp.as_of()), ", USD\n"));
  }
  Table t({"CONTRACT", "TENANT", "MODEL", "GPUS", "TERM", "RATE", "VALUE",
           "RECOGNISED", "BACKLOG", "NEXT 12 MO", "AFTER"});
  t.Money({"RATE", "VALUE", "RECOGNISED", "BACKLOG", "NEXT 12 MO", "AFTER"});
  auto row = [&](const v1::BacklogRow& r, const std::string& id) {
    t.Add({id, r.tenant(), r.gpu_model(),
           r.gpus() ? absl::StrCat(r.gpus()) : "",
           r.start_date().empty() ? "" : r.start_date() + ".." + r.end_date(),
           r.rate(), FormatCents(r.value_cents()),
           FormatCents(r.recognized_cents()), FormatCents(r.backlog_cents()),
           FormatCents(r.next_12_months_cents()),
           FormatCents(r.after_12_months_cents())});
  };
  for (const auto& r : resp.rows()) row(r, r.contract_id());
  for (const auto& r : resp.model_totals()) row(r, "TOTAL " + r.gpu_model());
  row(resp.total(), "TOTAL USD");
  Print(t.Render());
}

// -------------------------------------------------------- identity ----

// "operator", "finance", ...: the proto enum name without ROLE_, lower case.
std::string RoleText(v1::Role r) {
  if (r == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(r)) return "-";
  return absl::AsciiStrToLower(v1::Role_Name(r).substr(5));
}

struct TokenFlags {
  std::string role, tenant, node, name, expires;
};

void TokenCreate(Client& c, const Globals& g, const TokenFlags& f) {
  v1::CreateTokenRequest req;
  v1::Role role = v1::ROLE_UNSPECIFIED;
  v1::Role_Parse("ROLE_" + absl::AsciiStrToUpper(f.role), &role);  // checked
  req.set_role(role);
  req.set_tenant(f.tenant);
  req.set_node(f.node);
  req.set_name(f.name);
  if (!f.expires.empty()) {
    // Days too ("30d"), beside the usual durations.
    int64_t days = 0;
    absl::Duration ttl;
    if (absl::EndsWith(f.expires, "d") &&
        absl::SimpleAtoi(absl::string_view(f.expires).substr(
                             0, f.expires.size() - 1),
                         &days) &&
        days > 0 && days <= 3650) {
      ttl = absl::Hours(24 * days);
    } else {
      auto d = ParseNonNegativeDuration(f.expires, "--expires");
      if (!d.ok()) FailStatus(d.status());
      ttl = *d;
    }
    *req.mutable_expires_in() = ToProtoDuration(ttl);
  }
  v1::CreateTokenResponse resp;
  c.Call(&v1::AuthService::Stub::CreateToken, c.auth(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  // The secret alone on stdout (shown once); what it is on stderr.
  const v1::Token& t = resp.token();
  const std::string bound = !t.tenant().empty() ? " for tenant " + t.tenant()
                            : !t.node().empty() ? " for node " + t.node()
                                                : "";
  std::fprintf(stderr,
               "joulectl: token %s (%s%s) created; the secret below is "
               "shown once\n",
               t.id().c_str(), RoleText(t.role()).c_str(), bound.c_str());
  Print(resp.secret() + "\n");
}

void TokenList(Client& c, const Globals& g, bool all, const ListWindow& w) {
  const absl::Time cutoff = Cutoff(w);  // a bad --since: exit 2 first
  v1::ListTokensRequest req;
  req.set_include_revoked(all);
  v1::ListTokensResponse resp;
  c.Call(&v1::AuthService::Stub::ListTokens, c.auth(), req, &resp);
  // Created within --since; the latest --limit.
  ApplyWindow(
      resp.mutable_tokens(), cutoff, w.limit, /*latest=*/true,
      [](const v1::Token& x) { return FromProtoTime(x.created_time()); });
  if (Structured(g, resp)) return;
  Table t({"ID", "NAME", "ROLE", "TENANT/NODE", "CREATED", "EXPIRES", "REVOKED",
           "CREATED BY"});
  t.WideOnly({"CREATED BY"});
  for (const auto& x : resp.tokens()) {
    t.Add({x.id(), x.name().empty() ? "-" : x.name(), RoleText(x.role()),
           !x.tenant().empty() ? x.tenant()
           : !x.node().empty() ? x.node()
                               : "-",
           TimeText(x.created_time()), TimeText(x.expires_time()),
           x.revoked() ? TimeText(x.revoked_time()) : "-",
           x.created_by().empty() ? "-" : x.created_by()});
  }
  Print(t.Render());
}

void TokenRevoke(Client& c, const Globals& g, const std::string& id) {
  v1::RevokeTokenRequest req;
  req.set_id(id);
  v1::Token resp;
  c.Call(&v1::AuthService::Stub::RevokeToken, c.auth(), req, &resp);
  if (Structured(g, resp, kNoTable)) return;
  Print(absl::StrCat("token ", resp.id(), " revoked\n"));
}

void WhoAmI(Client& c, const Globals& g) {
  v1::WhoAmIResponse resp;
  c.Call(&v1::AuthService::Stub::WhoAmI, c.auth(), v1::WhoAmIRequest(),
         &resp);
  if (Structured(g, resp, kNoTable)) return;
  Print(absl::StrCat(resp.principal(), " (", resp.name(), ") role ",
                     RoleText(resp.role()),
                     resp.tenant().empty() ? "" : " tenant " + resp.tenant(),
                     resp.node().empty() ? "" : " node " + resp.node(),
                     resp.acting_for().empty()
                         ? ""
                         : " (operator acting as " + resp.acting_for() + ")",
                     "\n"));
}

void Audit(Client& c, const Globals& g, const std::string& since,
           const std::string& principal, uint32_t limit) {
  v1::ListAuditRequest req;
  if (!since.empty()) {
    auto d = ParseNonNegativeDuration(since, "--since");
    if (!d.ok()) FailStatus(d.status());
    *req.mutable_since() = ToProtoDuration(*d);
  }
  req.set_principal(principal);
  req.set_limit(limit);
  v1::ListAuditResponse resp;
  c.Call(&v1::AuthService::Stub::ListAudit, c.auth(), req, &resp);
  if (Structured(g, resp)) return;
  Table t({"TIME", "PRINCIPAL", "ROLE", "METHOD", "TARGET", "OUTCOME", "SEQ",
           "SERVICE", "PEER"});
  t.WideOnly({"SEQ", "SERVICE", "PEER"});
  for (const auto& r : resp.records()) {
    std::string who = r.principal();
    if (!r.principal_name().empty()) absl::StrAppend(&who, " (", r.principal_name(), ")");
    if (!r.acting_for().empty()) absl::StrAppend(&who, " as ", r.acting_for());
    std::string method = r.method();
    const size_t slash = method.rfind('/');
    if (slash != std::string::npos) method = method.substr(slash + 1);
    // Wide: the service of "/joule.v1.JobService/SubmitJob".
    const std::string service =
        slash == std::string::npos || slash == 0
            ? "-"
            : r.method().substr(r.method().rfind('.', slash) + 1,
                                slash - r.method().rfind('.', slash) - 1);
    t.Add({TimeText(r.time()), who, RoleText(r.role()), method,
           r.target().empty() ? "-" : r.target(), r.outcome(),
           absl::StrCat(r.seq()), service, r.peer().empty() ? "-" : r.peer()});
  }
  Print(t.Render());
}

void BillingCredit(Client& c, const Globals& g, const std::string& tenant,
                   const std::string& number, const std::string& amount,
                   const std::string& reason) {
  v1::IssueCreditNoteRequest req;
  req.set_tenant(tenant);
  req.set_statement_number(number);
  req.set_amount(amount);
  req.set_reason(reason);
  v1::CreditNote out;
  c.Call(&v1::BillingService::Stub::IssueCreditNote, c.billing(), req, &out);
  if (Structured(g, out, kNoTable)) return;
  Print(absl::StrCat("credit note ", out.number(), " USD ",
                     FormatCentsGrouped(out.amount_cents()), " against ",
                     out.statement_number(), ", on the ", out.booked_period(),
                     " statement\n"));
}

void BillingGrant(Client& c, const Globals& g, const std::string& tenant,
                  const std::string& amount, const std::string& expires) {
  v1::GrantCreditsRequest req;
  req.set_tenant(tenant);
  req.set_amount(amount);
  req.set_expires_date(expires);
  v1::CreditGrant out;
  c.Call(&v1::BillingService::Stub::GrantCredits, c.billing(), req, &out);
  if (Structured(g, out, kNoTable)) return;
  Print(absl::StrCat("grant ", out.id(), " USD ",
                     FormatCentsGrouped(out.amount_cents()), " to ",
                     out.tenant(),
                     out.expires_date().empty()
                         ? ""
                         : absl::StrCat(", expires ", out.expires_date()),
                     "\n"));
}

void BillingCredits(Client& c, const Globals& g, const std::string& tenant) {
  v1::ListCreditsRequest req;
  req.set_tenant(tenant.empty() ? g.as_tenant : tenant);
  v1::ListCreditsResponse resp;
  c.Call(&v1::BillingService::Stub::ListCredits, c.billing(), req, &resp);
  if (Structured(g, resp)) return;
  Table t({"KIND", "ID", "TENANT", "AMOUNT", "DETAIL"});
  t.Money({"AMOUNT"});
  for (const auto& x : resp.grants()) {
    t.Add({"grant", x.id(), x.tenant(), FormatCents(x.amount_cents()),
           x.expires_date().empty() ? "never expires"
                                    : "expires " + x.expires_date()});
  }
  for (const auto& x : resp.credit_notes()) {
    t.Add({"credit note", x.number(), x.tenant(),
           FormatCents(-x.amount_cents()),
           absl::StrCat(x.statement_number(), " on ", x.booked_period(), ": ",
                        x.reason())});
  }
  Print(t.Render());
  if (!req.tenant().empty() && !Csv()) {
    Print(absl::StrCat("prepaid credit balance USD ",
                       FormatCentsGrouped(resp.balance_cents()), "\n"));
  }
}

void BillingExport(Client& c, const Globals& g, const std::string& period) {
  v1::ExportPeriodRequest req;
  req.set_period(period);
  v1::ExportPeriodResponse resp;
  c.Call(&v1::BillingService::Stub::ExportPeriod, c.billing(), req, &resp);
  if (Structured(g, resp)) return;
  Print(ExportCsv(resp));
}

// `--watch`: runs `print` again and again (cli/watch_commands.h), else once.
// Pushed: redrawn on what `triggers` names, at most once per `gap`.
void Watchable(Client& c, bool watch, WatchTriggers triggers,
               absl::Duration gap, const std::function<void()>& print) {
  if (!watch) return print();
  throw Exit{WatchLoop(c.Watch(), print, gap, triggers)};
}

// ------------------------------------------------------ command tree ----
//
// joulectl's CLI11 command tree, one registration function per noun.
// Building all of it costs ~2 M instructions per process, most of a call
// through a session (bench/README.md, "Joule and Slurm"), so main() builds
// only the noun that argv names, and the whole tree where the output is the
// tree itself (usage, `help`, completion) or a typo's nearest command.

// What the registrations bind to, for one parse: the global options, the
// action the parsed command chose, and what main() looks at after parsing.
// Each noun's own flags are static in its registration function (they
// outlive the parse). Not thread-safe (CLI11 isn't).
struct Commands {
  explicit Commands(Globals& globals) : g(globals) {}
  Commands(const Commands&) = delete;
  Commands& operator=(const Commands&) = delete;

  // When `sub` is parsed, `fn` becomes the action.
  void Set(CLI::App* sub, std::function<void(Client&)> fn) {
    sub->callback([this, fn = std::move(fn)] { action = fn; });
  }

  Globals& g;
  std::function<void(Client&)> action;
  CLI::App* submit = nullptr;  // job submit: its command follows `--`
  std::vector<std::string>* submit_command = nullptr;
  CLI::App* help = nullptr;
  const std::vector<std::string>* help_words = nullptr;
  CLI::App* completion = nullptr;
  std::optional<SessionCommands> session;
};

void AddNodeCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* node = app.add_subcommand("node", "nodes")->require_subcommand(1);
  auto* nlist = node->add_subcommand("list", "list nodes");
  static ListWindow node_window;
  static bool node_watch = false;
  AddListWindow(nlist, &node_window, "registered within, e.g. 1h",
                "the first N nodes (by name)");
  nlist->add_flag("--watch", node_watch,
                  "print again on each change jouled pushes (events, jobs, "
                  "power rounds), at most once a second");
  cmd.Set(nlist, [&g](Client& c) {
    Watchable(c, node_watch, {.events = true, .jobs = true, .power = true},
              absl::Seconds(1), [&] { NodeList(c, g, node_window); });
  });
  static std::string node_name;
  auto* node_show = node->add_subcommand("show", "one node, per GPU");
  node_show->add_option("NAME", node_name)->required();
  cmd.Set(node_show, [&g](Client& c) { NodeShow(c, g, node_name); });
  auto* drain = node->add_subcommand("drain", "no new jobs on NAME");
  drain->add_option("NAME", node_name)->required();
  cmd.Set(drain, [&g](Client& c) { NodeDrain(c, g, node_name, true); });
  auto* undrain = node->add_subcommand("undrain", "accept jobs on NAME again");
  undrain->add_option("NAME", node_name)->required();
  cmd.Set(undrain, [&g](Client& c) { NodeDrain(c, g, node_name, false); });
  auto* node_remove =
      node->add_subcommand("remove", "forget NAME (no jobs may be on it)");
  node_remove->add_option("NAME", node_name)->required();
  cmd.Set(node_remove, [&g](Client& c) { NodeRemove(c, g, node_name); });
}

void AddJobCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* job = app.add_subcommand("job", "jobs")->require_subcommand(1);
  static SubmitFlags sf;
  auto* submit =
      job->add_subcommand("submit", "submit a job: ... -- CMD [ARGS]");
  submit->add_option("--tenant", sf.tenant, "tenant");
  submit->add_option("--gpus", sf.gpus, "GPUs per node")->required();
  submit->add_option("--nodes", sf.nodes, "nodes (a gang when > 1)");
  submit->add_option("--gpu-model", sf.gpu_model, "GPU model (default: any)");
  submit->add_option("--class", sf.cls, "reserved, on-demand or spot");
  submit->add_option("--priority", sf.priority, "priority within the class");
  submit->add_option("--power", sf.power, "per-GPU power limit, e.g. 500W");
  submit->add_option("--min-power", sf.min_power,
                     "lowest per-GPU limit tolerated (throttling floor)");
  submit->add_option("--power-mode", sf.power_mode,
                     "performance (default) or efficiency (runs at the "
                     "energy-optimal limit, the scheduler's knee)");
  submit->add_option("--max-runtime", sf.max_runtime,
                     "e.g. 2h (default: the class's default_max_runtime)");
  submit->add_option("--after", sf.after,
                     "JOB[,JOB]: start once these succeeded");
  submit->add_option("--name", sf.name, "job name");
  submit->add_option("--env", sf.env, "KEY=VALUE (repeatable)");
  submit->add_option("--sim-load", sf.sim_load,
                     "simulated GPUs: how hard the job drives them (0..1)");
  submit->add_option("--memory", sf.memory,
                     "memory limit per node, e.g. 64GiB (the job's cgroup)");
  submit->add_option("--cpus", sf.cpus,
                     "CPU limit per node, e.g. 16 or 0.5 (the job's cgroup)");
  submit->add_option("--preempt-signal", sf.preempt_signal,
                     "signal when preempted, e.g. SIGUSR1 (default SIGTERM)");
  submit->add_option("--preempt-grace", sf.preempt_grace,
                     "time from that signal to SIGKILL, e.g. 60s (default: "
                     "the stop grace; at most max_preempt_grace)");
  submit->add_option("--request-id", sf.request_id,
                     "idempotency key: retrying with it never submits twice");
  submit->add_option(
      "--array", sf.array,
      "a job array: tasks A..B, at most MAX at once (A-B[%MAX])");
  submit->add_flag("--wait", sf.wait,
                   "return once the job (every task) has ended; exit 1 unless "
                   "it succeeded");
  cmd.Set(submit, [&g](Client& c) { JobSubmit(c, g, sf); });
  cmd.submit = submit;
  cmd.submit_command = &sf.command;
  static std::string job_tenant, job_state, job_id;
  auto* jlist = job->add_subcommand("list", "list jobs");
  jlist->add_option("--tenant", job_tenant);
  jlist->add_option("--state", job_state);
  static ListWindow list_window;
  static std::string list_array;
  static bool watch = false, list_expand = false;
  AddListWindow(jlist, &list_window, "submitted within, e.g. 1h",
                "the latest N jobs");
  jlist->add_flag("--watch", watch, "print again on every job state change");
  jlist->add_option("--array", list_array, "only the tasks of this array");
  jlist->add_flag("--expand", list_expand, "one row per array task");
  cmd.Set(jlist, [&g](Client& c) {
    Watchable(c, watch, {.jobs = true}, absl::Seconds(2), [&] {
      JobList(c, g, job_tenant, job_state, list_window.limit, list_window.since,
              list_array, list_expand);
    });
  });
  auto* jshow = job->add_subcommand("show", "one job, with why it waits");
  jshow->add_option("ID", job_id)->required();
  cmd.Set(jshow, [&g](Client& c) { JobShow(c, g, job_id); });
  auto* jcancel = job->add_subcommand("cancel", "cancel a job");
  jcancel->add_option("ID", job_id)->required();
  cmd.Set(jcancel, [&g](Client& c) { JobCancel(c, g, job_id); });
  auto* jhold = job->add_subcommand("hold", "keep a pending job from starting");
  jhold->add_option("ID", job_id)->required();
  cmd.Set(jhold, [&g](Client& c) { JobHold(c, g, job_id, true); });
  auto* jrelease = job->add_subcommand("release", "let a held job start");
  jrelease->add_option("ID", job_id)->required();
  cmd.Set(jrelease, [&g](Client& c) { JobHold(c, g, job_id, false); });
  static uint32_t log_attempt = 0;
  auto* jlogs = job->add_subcommand("logs", "a job's stdout and stderr");
  jlogs->add_option("ID", job_id)->required();
  jlogs->add_option("--attempt", log_attempt, "attempt (default: latest)");
  cmd.Set(jlogs, [&g](Client& c) { JobLogs(c, g, job_id, log_attempt); });
  static std::string wait_timeout;
  auto* jwait =
      job->add_subcommand("wait",
                          "wait until a job ends; exit 0 succeeded, 4 failed, "
                          "5 cancelled, 6 timed out");
  jwait->add_option("ID", job_id)->required();
  jwait->add_option("--timeout", wait_timeout,
                    "give up after this long (default: no limit)");
  cmd.Set(jwait, [](Client& c) {
    absl::Duration limit = absl::ZeroDuration();
    if (!wait_timeout.empty()) {
      auto d = joule::ParseNonNegativeDuration(wait_timeout, "--timeout");
      if (!d.ok()) FailStatus(d.status());
      limit = *d;
    }
    throw Exit{JobWait(c.Watch(), job_id, limit)};
  });
}

void AddPowerCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* power =
      app.add_subcommand("power", "power domains")->require_subcommand(1);
  auto* ptree =
      power->add_subcommand("tree", "caps, committed, measured, headroom");
  static bool power_watch = false;
  ptree->add_flag("--watch", power_watch,
                  "print again on each change jouled pushes (events, jobs, "
                  "power rounds), at most once a second");
  cmd.Set(ptree, [&g](Client& c) {
    Watchable(c, power_watch, {.events = true, .jobs = true, .power = true},
              absl::Seconds(1), [&] { PowerTree(c, g); });
  });
  static std::string cap_domain, cap_watts, cap_reason;
  auto* setcap = power->add_subcommand("set-cap", "set a domain's cap");
  setcap->add_option("DOMAIN", cap_domain)->required();
  setcap->add_option("WATTS", cap_watts, "e.g. 40kW, 1.5MW, 700W")->required();
  setcap->add_option("--reason", cap_reason);
  static bool cap_dry_run = false, cap_yes = false;
  setcap->add_flag("--dry-run", cap_dry_run,
                   "print what it would throttle and preempt; change nothing");
  setcap->add_flag("--yes", cap_yes,
                   "set a cap far below the draw, or one that preempts");
  cmd.Set(setcap, [&g](Client& c) {
    PowerSetCap(c, g, cap_domain, cap_watts, cap_reason, cap_dry_run, cap_yes);
  });
}

void AddConfigCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* config = app.add_subcommand("config", "jouled's config file")
                     ->require_subcommand(1);
  cmd.Set(config->add_subcommand(
              "reload", "re-read jouled's --config, apply what changed"),
          [&g](Client& c) { ConfigReload(c, g); });
}

void AddEventsCommand(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  static std::string ev_kind;
  static ListWindow ev_window;
  auto* events =
      app.add_subcommand("events", "throttles, preemptions, caps...");
  AddListWindow(events, &ev_window, "recorded within, e.g. 10m",
                "the latest N events");
  events->add_option("--kind", ev_kind);
  static bool ev_watch = false;
  events->add_flag("--watch", ev_watch,
                   "then stream new events as they happen (WatchEvents)");
  cmd.Set(events, [&g](Client& c) {
    Events(c, g, ev_window.since, ev_kind, ev_window.limit);
    if (ev_watch) throw Exit{FollowEvents(c.Watch(), ev_kind)};
  });
}

void AddTenantCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* tenant = app.add_subcommand("tenant", "tenants")->require_subcommand(1);
  static std::string tenant_name;
  static uint32_t tenant_weight = 1;
  auto* tcreate = tenant->add_subcommand("create", "create a tenant");
  tcreate->add_option("NAME", tenant_name)->required();
  tcreate->add_option("--weight", tenant_weight, "fair-share weight");
  cmd.Set(tcreate,
          [&g](Client& c) { TenantCreate(c, g, tenant_name, tenant_weight); });
  static ListWindow tenant_window;
  auto* tlist = tenant->add_subcommand("list", "list tenants");
  AddListWindow(tlist, &tenant_window, "created within, e.g. 30d",
                "the first N tenants (by name)");
  cmd.Set(tlist, [&g](Client& c) { TenantList(c, g, tenant_window); });
  static std::vector<std::string> quota_gpus;
  static int64_t quota_pending = -1;
  auto* tquota = tenant->add_subcommand(
      "set-quota", "replace a tenant's quota (flags not given: no limit)");
  tquota->add_option("NAME", tenant_name)->required();
  tquota->add_option("--max-gpus", quota_gpus,
                     "CLASS=GPUS: most GPUs running in CLASS (repeatable)");
  tquota->add_option("--max-pending", quota_pending, "most pending jobs");
  cmd.Set(tquota, [&g](Client& c) {
    TenantSetQuota(c, g, tenant_name, quota_gpus, quota_pending);
  });
}

void AddPriceCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* price =
      app.add_subcommand("price", "price catalogue")->require_subcommand(1);
  static PriceFlags pf;
  auto* pset = price->add_subcommand("set", "add a price version");
  pset->add_option("KIND", pf.kind, "gpu-hour or inference")
      ->required()
      ->check(CLI::IsMember({"gpu-hour", "inference"}));
  pset->add_option("--gpu-model", pf.gpu_model);
  pset->add_option("--class", pf.cls, "on-demand or spot");
  pset->add_option("--price", pf.price, "USD per GPU-hour, e.g. 2.49");
  pset->add_option("--tenant", pf.tenant,
                   "a tenant's rate card (wins over the list price)");
  pset->add_option("--model", pf.model, "served model");
  pset->add_option("--input", pf.input,
                   "USD per 1M input tokens, or tiers 0:0.80,1000000000:0.60");
  pset->add_option("--output", pf.output,
                   "USD per 1M output tokens (tiers too)");
  pset->add_option("--per-request", pf.per_request, "USD per request");
  pset->add_option("--from", pf.effective, "effective from (default now)");
  cmd.Set(pset, [&g](Client& c) { PriceSet(c, g, pf); });
  static bool price_history = false;
  auto* plist = price->add_subcommand("list", "prices in effect");
  plist->add_flag("--history", price_history, "every version");
  static ListWindow price_window;
  AddListWindow(plist, &price_window, "effective within, e.g. 30d",
                "the latest N versions");
  cmd.Set(plist,
          [&g](Client& c) { PriceList(c, g, price_history, price_window); });
}

void AddContractCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* contract = app.add_subcommand("contract", "reserved contracts")
                       ->require_subcommand(1);
  static ContractFlags cf;
  auto* ccreate = contract->add_subcommand("create", "create a contract");
  ccreate->add_option("--tenant", cf.tenant)->required();
  ccreate->add_option("--gpu-model", cf.gpu_model)->required();
  ccreate->add_option("--gpus", cf.gpus)->required();
  ccreate->add_option("--start", cf.start, "YYYY-MM-DD (UTC)")->required();
  ccreate->add_option("--end", cf.end, "YYYY-MM-DD, exclusive")->required();
  ccreate->add_option("--rate", cf.rate, "USD per GPU-hour")->required();
  ccreate->add_option("--overage-rate", cf.overage, "default: on-demand price");
  cmd.Set(ccreate, [&g](Client& c) { ContractCreate(c, g, cf); });
  static std::string contract_tenant;
  auto* clist = contract->add_subcommand("list", "list contracts");
  clist->add_option("--tenant", contract_tenant);
  static ListWindow contract_window;
  AddListWindow(clist, &contract_window, "created within, e.g. 30d",
                "the latest N contracts");
  cmd.Set(clist, [&g](Client& c) {
    ContractList(c, g, contract_tenant, contract_window);
  });
}

void AddUsageCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* usage =
      app.add_subcommand("usage", "inference usage")->require_subcommand(1);
  static UsageFlags uf;
  auto* urec = usage->add_subcommand("record", "record one usage event");
  urec->add_option("--tenant", uf.tenant);
  urec->add_option("--model", uf.model)->required();
  urec->add_option("--requests", uf.requests);
  urec->add_option("--input-tokens", uf.input)->required();
  urec->add_option("--output-tokens", uf.output)->required();
  urec->add_option("--time", uf.time, "RFC 3339 (default now)");
  urec->add_option("--key", uf.key, "idempotency key")->required();
  cmd.Set(urec, [&g](Client& c) { UsageRecord(c, g, uf); });
  static std::string import_path;
  static uint32_t import_batch = 2000;
  auto* uimp = usage->add_subcommand("import", "import a usage CSV");
  uimp->add_option("FILE", import_path)->required();
  uimp->add_option("--batch", import_batch, "events per call")
      ->check(CLI::Range(1, 100000));
  cmd.Set(uimp,
          [&g](Client& c) { UsageImport(c, g, import_path, import_batch); });
}

void AddBillingCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* billing = app.add_subcommand("billing", "statements, backlog")
                      ->require_subcommand(1);
  static std::string st_tenant, st_period, as_of;
  auto* stmt = billing->add_subcommand("statement", "a tenant's statement");
  stmt->add_option("--tenant", st_tenant);
  stmt->add_option("--period", st_period, "YYYY-MM")->required();
  cmd.Set(stmt, [&g](Client& c) { Statement(c, g, st_tenant, st_period); });
  auto* fin = billing->add_subcommand("finalize", "freeze a period");
  fin->add_option("--period", st_period, "YYYY-MM")->required();
  cmd.Set(fin, [&g](Client& c) { Finalize(c, g, st_period); });
  auto* backlog = billing->add_subcommand("backlog", "contract backlog (RPO)");
  backlog->add_option("--as-of", as_of, "RFC 3339 or YYYY-MM-DD");
  cmd.Set(backlog, [&g](Client& c) { Backlog(c, g, as_of); });
  static std::string cr_tenant, cr_number, cr_amount, cr_reason, cr_expires;
  auto* credit = billing->add_subcommand(
      "credit", "issue a credit note against a finalized statement");
  credit->add_option("--tenant", cr_tenant)->required();
  credit->add_option("--statement", cr_number, "JS-YYYY-MM-NNNNNN")->required();
  credit->add_option("--amount", cr_amount, "USD, e.g. 12.50")->required();
  credit->add_option("--reason", cr_reason)->required();
  cmd.Set(credit, [&g](Client& c) {
    BillingCredit(c, g, cr_tenant, cr_number, cr_amount, cr_reason);
  });
  auto* grant = billing->add_subcommand("grant", "grant prepaid credits");
  grant->add_option("--tenant", cr_tenant)->required();
  grant->add_option("--amount", cr_amount, "USD, e.g. 500")->required();
  grant->add_option("--expires", cr_expires, "YYYY-MM-DD (exclusive)");
  cmd.Set(grant, [&g](Client& c) {
    BillingGrant(c, g, cr_tenant, cr_amount, cr_expires);
  });
  auto* credits = billing->add_subcommand(
      "credits", "prepaid credit grants, credit notes, balance");
  credits->add_option("--tenant", cr_tenant);
  cmd.Set(credits, [&g](Client& c) { BillingCredits(c, g, cr_tenant); });
  static std::string ex_period;
  auto* exp = billing->add_subcommand(
      "export", "finance export: every statement line, revenue per contract");
  exp->add_option("--period", ex_period, "YYYY-MM")->required();
  cmd.Set(exp, [&g](Client& c) { BillingExport(c, g, ex_period); });
}

void AddTokenCommands(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  auto* token = app.add_subcommand("token", "bearer tokens (operators)")
                    ->require_subcommand(1);
  static TokenFlags tf;
  auto* tcreate_tok =
      token->add_subcommand("create", "create a token; prints it once");
  tcreate_tok->add_option("--role", tf.role)
      ->required()
      ->check(CLI::IsMember(
          {"operator", "finance", "metering", "tenant", "agent"}));
  tcreate_tok->add_option("--tenant", tf.tenant, "role tenant: its tenant");
  tcreate_tok->add_option("--node", tf.node, "role agent: its node");
  tcreate_tok->add_option("--name", tf.name, "who or what it is for");
  tcreate_tok->add_option("--expires", tf.expires,
                          "lifetime, e.g. 30d, 12h (default: never)");
  cmd.Set(tcreate_tok, [&g](Client& c) { TokenCreate(c, g, tf); });
  static bool token_all = false;
  auto* tlist_tok = token->add_subcommand("list", "tokens (no secrets)");
  tlist_tok->add_flag("--all", token_all, "include revoked tokens");
  static ListWindow token_window;
  AddListWindow(tlist_tok, &token_window, "created within, e.g. 7d",
                "the latest N tokens");
  cmd.Set(tlist_tok,
          [&g](Client& c) { TokenList(c, g, token_all, token_window); });
  static std::string token_id;
  auto* trevoke = token->add_subcommand("revoke", "revoke a token at once");
  trevoke->add_option("ID", token_id)->required();
  cmd.Set(trevoke, [&g](Client& c) { TokenRevoke(c, g, token_id); });
}

void AddWhoAmICommand(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  cmd.Set(app.add_subcommand("whoami", "the caller's identity and role"),
          [&g](Client& c) { WhoAmI(c, g); });
}

void AddAuditCommand(CLI::App& app, Commands& cmd) {
  Globals& g = cmd.g;
  static std::string audit_principal;
  static ListWindow audit_window;
  auto* audit = app.add_subcommand("audit", "audit log of mutating calls");
  AddListWindow(audit, &audit_window, "recorded within, e.g. 1h",
                "latest N (default 1000)");
  audit->add_option("--principal", audit_principal, "token id or node:NAME");
  cmd.Set(audit, [&g](Client& c) {
    Audit(c, g, audit_window.since, audit_principal, audit_window.limit);
  });
}

// session: a resident client (cli/session.h)
void AddSessionCommands(CLI::App& app, Commands& cmd) {
  cmd.session.emplace(app);
}

// Local commands: usage and completion need no daemon.
void AddHelpCommand(CLI::App& app, Commands& cmd) {
  static std::vector<std::string> help_words;
  cmd.help = app.add_subcommand("help", "usage of joulectl or a command");
  cmd.help->add_option("COMMAND", help_words, "e.g. job submit");
  cmd.help_words = &help_words;
}

void AddCompletionCommand(CLI::App& app, Commands& cmd) {
  cmd.completion = app.add_subcommand("completion", "shell completion script");
  static std::string completion_shell;
  cmd.completion->add_option("SHELL", completion_shell, "bash")
      ->required()
      ->check(CLI::IsMember({"bash"}));
}

// Every noun, in the order of `joulectl help`. `whole_tree`: the command's
// output is made from the whole tree (help, completion), so naming it
// builds every noun.
struct Noun {
  const char* name;  // as its registration adds it
  void (*add)(CLI::App& app, Commands& cmd);
  bool whole_tree = false;
};
constexpr Noun kNouns[] = {
    {"node", AddNodeCommands},      {"job", AddJobCommands},
    {"power", AddPowerCommands},    {"config", AddConfigCommands},
    {"events", AddEventsCommand},   {"tenant", AddTenantCommands},
    {"price", AddPriceCommands},    {"contract", AddContractCommands},
    {"usage", AddUsageCommands},    {"billing", AddBillingCommands},
    {"token", AddTokenCommands},    {"whoami", AddWhoAmICommand},
    {"audit", AddAuditCommand},     {"session", AddSessionCommands},
    {"help", AddHelpCommand, true}, {"completion", AddCompletionCommand, true},
};

// Adds to `app` the noun named `only`, or every noun when `only` is null.
void AddCommands(CLI::App& app, Commands& cmd, const Noun* only) {
  for (const Noun& n : kNouns) {
    if (only == nullptr || only == &n) n.add(app, cmd);
  }
  // A bare `joulectl` or noun prints its usage (main()), not an error.
  app.require_subcommand(0, 1);
  for (CLI::App* noun : app.get_subcommands({})) {
    if (!noun->get_subcommands({}).empty()) noun->require_subcommand(0, 1);
  }
}

// The noun the command line names when that noun alone is enough to parse
// it and print what it prints; null when the whole tree is needed (no
// noun, a typo, `help`, `completion`). `app` holds the global options only.
const Noun* NounToBuild(const CLI::App& app, int argc, char** argv) {
  const std::vector<std::string> words = CommandWords(app, argc, argv);
  if (words.empty()) return nullptr;
  for (const Noun& n : kNouns) {
    if (words[0] == n.name) return n.whole_tree ? nullptr : &n;
  }
  return nullptr;
}

}  // namespace
}  // namespace joule::cli

int main(int argc, char** argv) {
  joule::UseReleaseMutexMode();
  using namespace joule::cli;
  CLI::App app{"joulectl: Joule's CLI for tenants and operators"};
  joule::AddVersionFlag(app, "joulectl");
  // Global options (-o, --server, ...) are accepted after the command too.
  app.fallthrough();
  Globals g;
  const char* env_server = std::getenv("JOULE_SERVER");
  g.server =
      env_server != nullptr && *env_server ? env_server : "127.0.0.1:7070";
  app.add_option("--server", g.server,
                 "jouled address (default $JOULE_SERVER or 127.0.0.1:7070)");
  app.add_option("-o,--output", g.output, "table, wide, json, yaml or csv")
      ->check(CLI::IsMember({"table", "wide", "json", "yaml", "csv"}));
  app.add_option("--as-tenant", g.as_tenant,
                 "operators: act as this tenant (recorded in the audit log)");
  app.add_option("--timeout", g.timeout, "deadline of each call");
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "");
  };
  g.transport.ca_file = env("JOULE_CA");
  g.transport.token = env("JOULE_TOKEN");
  g.transport.token_file = env("JOULE_TOKEN_FILE");
  g.transport.insecure = env("JOULE_INSECURE") == "1";
  app.add_option("--ca", g.transport.ca_file,
                 "CA that jouled's certificate is checked against (default "
                 "$JOULE_CA; none: the system's roots)");
  app.add_option("--token", g.transport.token,
                 "bearer token (default $JOULE_TOKEN)");
  app.add_option("--token-file", g.transport.token_file,
                 "file holding the bearer token (default $JOULE_TOKEN_FILE)");
  app.add_flag("--insecure", g.transport.insecure,
               "plaintext gRPC, for a jouled started with --insecure "
               "(default: $JOULE_INSECURE=1)");

  // Everything after the first `--` is the job's command (job submit), not
  // parsed here: no option before it can swallow it.
  int parsed_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      parsed_argc = i;
      break;
    }
  }
  std::vector<std::string> trailing(argv + std::min(argc, parsed_argc + 1),
                                    argv + argc);
  // The noun argv names, or the whole tree (see "command tree" above).
  Commands cmd(g);
  const Noun* only = NounToBuild(app, parsed_argc, argv);
  AddCommands(app, cmd, only);
  const int bad = joule::ParseCommandLine(
      app, "joulectl", parsed_argc, argv,
      [&](const CLI::ParseError& e) -> std::string {
        if (dynamic_cast<const CLI::ExtrasError*>(&e) == nullptr) {
          return e.what();
        }
        if (cmd.submit != nullptr && cmd.submit->parsed()) {
          return absl::StrCat(e.what(),
                              " (job submit: the command goes after --)");
        }
        // A typo of a command: the nearest one of the whole tree.
        const std::vector<std::string> words =
            CommandWords(app, parsed_argc, argv);
        CLI::App whole;
        Globals unused;
        Commands whole_cmd(unused);
        if (only != nullptr) AddCommands(whole, whole_cmd, nullptr);
        const std::string near =
            NearestCommand(only != nullptr ? whole : app, words);
        const size_t n = std::count(near.begin(), near.end(), ' ') + 1;
        const std::string typed = absl::StrJoin(
            std::vector<std::string>(words.begin(),
                                     words.begin() + std::min(words.size(), n)),
            " ");
        if (near.empty() || near == typed) return e.what();
        return absl::StrCat("unknown command \"", typed, "\"; did you mean `",
                            near, "`? (joulectl help)");
      });
  // 0: --help, --version; 2: bad command line. ExitNow: without tearing the
  // command tree down.
  if (bad >= 0) ExitNow(bad);
  if (cmd.help != nullptr && cmd.help->parsed()) {
    const std::vector<std::string>& help_words = *cmd.help_words;
    const CLI::App* target = &app;
    for (const std::string& w : help_words) {
      const CLI::App* next = nullptr;
      for (const CLI::App* sub : target->get_subcommands({})) {
        if (sub->get_name() == w) next = sub;
      }
      if (next == nullptr) {
        const std::string near = NearestCommand(app, help_words);
        std::fprintf(
            stderr, "joulectl: no command \"%s\"%s\n",
            absl::StrJoin(help_words, " ").c_str(),
            near.empty()
                ? ""
                : absl::StrCat("; did you mean `", near, "`?").c_str());
        ExitNow(2);
      }
      target = next;
    }
    std::printf("%s", target->help().c_str());
    ExitNow(0);
  }
  if (cmd.completion != nullptr && cmd.completion->parsed()) {
    std::printf("%s", BashCompletion(app).c_str());
    ExitNow(0);
  }
  if (cmd.session) {
    // The session's proxy looks methods up by name
    // (cli/deferred_descriptors.h).
    if (app.got_subcommand("session")) RegisterDeferredDescriptors();
    if (auto rc = cmd.session->Run(g.server, g.transport, argc, argv)) {
      return *rc;
    }
  }
  if (!cmd.action) {  // `joulectl` or `joulectl NOUN`: its usage
    const CLI::App* target = &app;
    for (const CLI::App* sub : app.get_subcommands()) target = sub;
    std::printf("%s", target->help().c_str());
    ExitNow(0);
  }
  if (cmd.submit != nullptr && cmd.submit->parsed()) {
    if (parsed_argc == argc || trailing.empty()) {
      std::fprintf(stderr,
                   "joulectl: job submit: the command goes after -- "
                   "(job submit --gpus N [flags] -- CMD [ARGS...])\n");
      return 2;
    }
    *cmd.submit_command = trailing;
  } else if (parsed_argc < argc) {
    std::fprintf(stderr,
                 "joulectl: \"--\" belongs to job submit (the job's "
                 "command follows it)\n");
    return 2;
  }
  if (auto t = joule::ParseNonNegativeDuration(g.timeout, "--timeout");
      !t.ok()) {
    std::fprintf(stderr, "joulectl: %s\n",
                 std::string(t.status().message()).c_str());
    return 2;
  }
  SetOutputFormat(*ParseOutputFormat(g.output));
  g.session = SessionToUse(env("JOULE_SESSION"),
                           SessionCommands::ExplicitTransport(app));
  if (!g.session.empty()) {  // not another user's socket or directory
    absl::Status s = CheckSessionSocket(g.session, geteuid());
    if (!s.ok()) {
      std::fprintf(stderr, "joulectl: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  try {
    Client client(g);
    cmd.action(client);
  } catch (const Exit& e) {
    ExitNow(e.code);  // without tearing gRPC down (cli/output.h)
  }
  ExitNow(0);
}
