#include "agent/agent.h"

#include <signal.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/cgroup.h"
#include "agent/job_record.h"
#include "common/log.h"
#include "common/preempt_signal.h"
#include "common/proto_time.h"
#include "common/systemd_notify.h"

namespace joule::agent {

Agent::Agent(AgentOptions options, GpuBackend* backend, const Clock* clock)
    : options_(std::move(options)),
      backend_(backend),
      clock_(clock),
      follower_(ParseEndpoints(options_.server, "--server")
                    .value_or(std::vector<std::string>{options_.server})) {
  JobRunner::Options ro;
  ro.log_dir = options_.log_dir;
  ro.state_dir = options_.state_dir;
  ro.supervisor_path = options_.supervisor_path;
  ro.cgroup_root = options_.cgroup_root;
  ro.cgroup_v1_roots = options_.cgroup_v1_roots;
  ro.clock = clock_;
  ro.on_exit = [this](const JobExit& e) { OnJobExit(e); };
  runner_ = std::make_unique<JobRunner>(std::move(ro));
  // Attempts that ended while no agent ran: reported at registration (as
  // exited) and by EXITED updates once connected.
  for (const JobExit& e : runner_->TakeEndedAtStartup()) OnJobExit(e);
  for (const RunningProcess& p : runner_->Running()) {
    fprintf(stderr, "joule-agent: re-adopted %s attempt %u (supervisor %d)\n",
            p.job_id.c_str(), p.attempt, static_cast<int>(p.pid));
    for (uint32_t g : p.gpus) backend_->SetLoad(g, 1.0);
  }
}

Agent::~Agent() {
  Shutdown();
  runner_.reset();  // kills what still runs
}

absl::Duration Agent::NextBackoff(absl::Duration current, absl::Duration max,
                                  absl::BitGenRef gen) {
  absl::Duration next = std::min(current * 2, max);
  const double jitter = absl::Uniform(gen, 0.8, 1.2);
  return std::min(next * jitter, max);
}

void Agent::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

void Agent::Run() {
  absl::BitGen gen;
  absl::Duration backoff = options_.backoff_initial;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
    }
    bool connected = false;
    systemd::NotifyWatchdog();  // (re)connecting is alive too
    Session(&connected);
    if (connected) backoff = options_.backoff_initial;
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&shutdown_), backoff)) return;
    backoff = NextBackoff(backoff, options_.backoff_max, gen);
  }
}

uint64_t Agent::EnergyOf(const std::vector<uint32_t>& gpus) {
  auto sample = backend_->Sample();
  if (!sample.ok()) return 0;
  uint64_t total = 0;
  for (const auto& g : *sample) {
    if (std::find(gpus.begin(), gpus.end(), g.index()) != gpus.end()) {
      total += g.energy_mj();
    }
  }
  return total;
}

v1::NodeReport Agent::BuildReport() {
  systemd::NotifyWatchdog();  // reports flow: the agent is alive
  v1::NodeReport report;
  report.set_node_name(options_.node_name);
  *report.mutable_time() = ToProtoTime(clock_->Now());
  auto sample = backend_->Sample();
  if (sample.ok()) {
    for (auto& g : *sample) *report.add_gpus() = std::move(g);
  }
  for (auto& j : RunningJobs()) *report.add_jobs() = std::move(j);
  return report;
}

std::vector<v1::RunningJob> Agent::RunningJobs() {
  std::vector<v1::RunningJob> out;
  for (const RunningProcess& p : runner_->Running()) {
    v1::RunningJob& j = out.emplace_back();
    j.set_job_id(p.job_id);
    j.set_attempt(p.attempt);
    j.set_pid(p.pid);
    for (uint32_t g : p.gpus) j.add_gpu_indices(g);
  }
  return out;
}

bool Agent::Send(const v1::AgentMessage& msg) {
  absl::MutexLock lock(&write_mu_);
  if (stream_ == nullptr) return false;
  return stream_->Write(msg);
}

void Agent::Session(bool* connected) {
  transport::ClientOptions to = options_.transport;
  const std::string server = follower_.Current();
  to.server = server;
  auto client = transport::Client::Open(to);
  if (!client.ok()) {
    fprintf(stderr, "joule-agent: %s\n",
            std::string(client.status().message()).c_str());
    return;
  }
  auto stub = v1::AgentService::NewStub(client->channel());

  v1::RegisterRequest reg;
  reg.set_node_name(options_.node_name);
  reg.set_address(options_.address);
  reg.set_gpu_backend(backend_->Name());
  reg.set_agent_version("0.1.0");
  for (const auto& g : backend_->Discover()) *reg.add_gpus() = g;
  for (auto& j : RunningJobs()) *reg.add_running_jobs() = std::move(j);
  {
    // Ends the daemon may not know yet: it keeps those attempts until the
    // EXITED updates below arrive, instead of settling them as lost.
    absl::MutexLock lock(&mu_);
    for (const v1::JobUpdate& u : finished_) {
      v1::RunningJob* j = reg.add_running_jobs();
      j->set_job_id(u.job_id());
      j->set_attempt(u.attempt());
      j->set_exited(true);
    }
  }
  v1::RegisterResponse reg_resp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    client->Authorize(&ctx);
    grpc::Status s = stub->Register(&ctx, reg, &reg_resp);
    if (!s.ok()) {
      follower_.OnFailure(s.error_code(), s.error_message());
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        log::Log(log::Level::kWarn, "registration-refused",
                 {{"node", options_.node_name},
                  {"server", server},
                  {"msg", "registration refused: " + s.error_message()}});
      }
      return;
    }
  }
  // The daemon's interval applies unless this agent's flag fixed one.
  absl::Duration interval = options_.report_interval;
  const absl::Duration asked = FromProtoDuration(reg_resp.report_interval());
  if (!options_.report_interval_fixed && asked >= absl::Milliseconds(10)) {
    interval = asked;
  }

  grpc::ClientContext ctx;
  client->Authorize(&ctx);
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    context_ = &ctx;
  }
  std::unique_ptr<Stream> stream = stub->Connect(&ctx);
  {
    absl::MutexLock lock(&write_mu_);
    stream_ = stream.get();
  }
  v1::AgentMessage hello;
  hello.mutable_hello()->set_node_name(options_.node_name);
  hello.mutable_hello()->set_session_id(reg_resp.session_id());
  if (Send(hello)) {
    *connected = true;
    log::Log(log::Level::kInfo, "connected",
             {{"node", options_.node_name},
              {"server", server},
              {"msg", absl::StrCat("connected to ", server, " as ",
                                   options_.node_name)}});
    // Job endings the daemon may have missed while we were apart.
    std::deque<v1::JobUpdate> resend;
    {
      absl::MutexLock lock(&mu_);
      resend = finished_;
    }
    for (const auto& u : resend) {
      v1::AgentMessage m;
      *m.mutable_job_update() = u;
      Send(m);
    }
  }

  std::atomic<bool> reader_done{false};
  std::thread reader([&] {
    v1::DaemonMessage msg;
    while (stream->Read(&msg)) HandleCommand(msg);
    reader_done = true;
    absl::MutexLock lock(&mu_);  // wake the report loop
  });
  while (*connected && !reader_done) {
    v1::AgentMessage m;
    *m.mutable_report() = BuildReport();
    if (!Send(m)) break;
    absl::MutexLock lock(&mu_);
    auto woken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutdown_ || reader_done.load();
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&woken), interval)) break;
  }
  {
    absl::MutexLock lock(&write_mu_);
    stream_ = nullptr;
  }
  ctx.TryCancel();
  reader.join();
  stream->Finish().IgnoreError();
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  if (*connected && !shutdown_) {
    log::Log(log::Level::kWarn, "disconnected",
             {{"node", options_.node_name},
              {"server", server},
              {"msg",
               absl::StrCat("lost connection to ", server, "; reconnecting")}});
    // Try the next endpoint: if this one still leads, a standby sends us back.
    follower_.OnFailure(grpc::StatusCode::UNAVAILABLE, "");
  }
}

void Agent::HandleCommand(const v1::DaemonMessage& msg) {
  v1::AgentMessage reply;
  v1::CommandResult* result = reply.mutable_command_result();
  result->set_command_id(msg.command_id());
  switch (msg.cmd_case()) {
    case v1::DaemonMessage::kStartJob:
      StartJob(msg.command_id(), msg.start_job());
      return;
    case v1::DaemonMessage::kStopJob: {
      const auto& stop = msg.stop_job();
      // The notice signal (common/preempt_signal.h); an unknown one is
      // SIGTERM, so the job still stops.
      absl::Status s = runner_->Stop(
          stop.job_id(), stop.attempt(), FromProtoDuration(stop.grace_period()),
          PreemptSignalNumber(stop.signal()).value_or(SIGTERM));
      result->set_ok(s.ok());
      if (!s.ok()) result->set_error(std::string(s.message()));
      break;
    }
    case v1::DaemonMessage::kSetPowerLimit: {
      const auto& set = msg.set_power_limit();
      auto enforced =
          backend_->SetPowerLimit(set.gpu_index(), set.power_limit_mw());
      result->set_ok(enforced.ok());
      log::Log(
          enforced.ok() ? log::Level::kInfo : log::Level::kWarn, "power-limit",
          {{"node", options_.node_name},
           {"gpu", absl::StrCat(set.gpu_index())},
           {"limit_mw",
            absl::StrCat(enforced.ok() ? *enforced : set.power_limit_mw())},
           {"msg", enforced.ok() ? std::string("enforced")
                                 : std::string(enforced.status().message())}});
      if (enforced.ok()) {
        result->set_enforced_power_limit_mw(*enforced);
      } else {
        result->set_error(std::string(enforced.status().message()));
      }
      break;
    }
    case v1::DaemonMessage::kFetchLogs: {
      const auto& f = msg.fetch_logs();
      bool truncated = false;
      auto data = runner_->ReadLog(f.job_id(), f.attempt(),
                                   f.max_bytes() == 0 ? 1 << 20 : f.max_bytes(),
                                   &truncated);
      v1::AgentMessage m;
      v1::LogChunk* chunk = m.mutable_log_chunk();
      chunk->set_command_id(msg.command_id());
      if (data.ok()) {
        chunk->set_data(*data);
        chunk->set_truncated(truncated);
      } else {
        chunk->set_error(std::string(data.status().message()));
      }
      Send(m);
      return;
    }
    default:
      result->set_ok(false);
      result->set_error("unknown command");
  }
  Send(reply);
}

void Agent::StartJob(uint64_t command_id, const v1::StartJob& start) {
  if (!ValidJobId(start.job_id())) {
    // No path, record or process is made from an id that is not one.
    v1::AgentMessage m;
    m.mutable_command_result()->set_command_id(command_id);
    m.mutable_command_result()->set_ok(false);
    m.mutable_command_result()->set_error(
        absl::StrCat("start_job.job_id: \"", start.job_id().substr(0, 64),
                     "\" is not a job id (job-NNN); refused"));
    Send(m);
    return;
  }
  if (runner_->IsRunning(start.job_id(), start.attempt())) return;  // dup
  JobLaunch launch;
  launch.job_id = start.job_id();
  launch.attempt = start.attempt();
  launch.command.assign(start.command().begin(), start.command().end());
  std::vector<uint32_t> gpus(start.gpu_indices().begin(),
                             start.gpu_indices().end());
  const std::string visible = absl::StrJoin(gpus, ",");
  std::vector<std::pair<std::string, std::string>> job_vars(start.env().begin(),
                                                            start.env().end());
  std::sort(job_vars.begin(), job_vars.end());
  std::vector<std::pair<std::string, std::string>> joule_vars = {
      {"CUDA_VISIBLE_DEVICES", visible},
      {"NVIDIA_VISIBLE_DEVICES", visible},
      {"JOULE_JOB_ID", start.job_id()},
      {"JOULE_ATTEMPT", absl::StrCat(start.attempt())},
      {"JOULE_NODE_RANK", absl::StrCat(start.node_rank())},
      {"JOULE_NUM_NODES", absl::StrCat(start.num_nodes())},
      {"JOULE_MASTER_ADDR", start.master_addr()},
      {"JOULE_NODE_NAME", options_.node_name},
      {"JOULE_TENANT", start.tenant()},
  };
  std::string array_id, array_index;  // a task of a job array
  if (ArrayTaskOf(start.job_id(), &array_id, &array_index)) {
    joule_vars.emplace_back("JOULE_ARRAY_ID", array_id);
    joule_vars.emplace_back("JOULE_ARRAY_INDEX", array_index);
  }
  auto who = ResolveJobIdentity(options_.job_users, start.tenant());
  if (who.ok()) {
    launch.identity = *who;
    launch.env = BuildJobEnv(*who, job_vars, joule_vars);
  }
  launch.max_runtime = FromProtoDuration(start.max_runtime());
  launch.gpus = gpus;
  // Limits this node can enforce go to the supervisor; one it cannot is
  // said in the STARTED message (the job's history) and the agent's log.
  JobLimits enforced;
  const std::string unenforced = EnforceableLimits(
      EffectiveLimits(
          {start.memory_bytes(), start.cpu_millis()},
          {options_.memory_per_gpu_bytes, options_.cpu_millis_per_gpu},
          static_cast<int64_t>(gpus.size())),
      options_.can_limit_memory, options_.can_limit_cpu, options_.isolation,
      &enforced);
  launch.memory_bytes = enforced.memory_bytes;
  launch.cpu_millis = enforced.cpu_millis;
  if (!unenforced.empty()) {
    fprintf(stderr, "joule-agent: %s attempt %u: %s\n", start.job_id().c_str(),
            start.attempt(), unenforced.c_str());
  }

  // The requested per-GPU limit applies before the job starts.
  if (start.power_limit_mw() > 0) {
    for (uint32_t g : gpus)
      backend_->SetPowerLimit(g, start.power_limit_mw()).IgnoreError();
  }
  const double load = start.sim_load() > 0 ? start.sim_load() : 1.0;
  // mu_ is held until STARTED is sent, so that the exit of a short job
  // (reported by OnJobExit, which takes mu_) always comes after it.
  launch.energy_at_start_mj = EnergyOf(gpus);
  absl::MutexLock lock(&mu_);
  absl::Status s = who.ok() ? runner_->Start(launch) : who.status();
  v1::AgentMessage m;
  v1::JobUpdate* u = m.mutable_job_update();
  u->set_job_id(start.job_id());
  u->set_attempt(start.attempt());
  *u->mutable_time() = ToProtoTime(clock_->Now());
  if (!s.ok()) {
    u->set_phase(v1::JOB_PHASE_FAILED_TO_START);
    u->set_message(std::string(s.message()));
    finished_.push_back(*u);
    while (finished_.size() > options_.max_finished_kept) finished_.pop_front();
  } else {
    for (uint32_t g : gpus) backend_->SetLoad(g, load);
    u->set_phase(v1::JOB_PHASE_STARTED);
    u->set_message(unenforced);
  }
  log::Log(
      s.ok() ? log::Level::kInfo : log::Level::kWarn, "job-start",
      {{"job", start.job_id()},
       {"node", options_.node_name},
       {"attempt", absl::StrCat(start.attempt())},
       {"gpus", absl::StrJoin(gpus, ",")},
       {"msg", s.ok() ? std::string("started") : std::string(s.message())}});
  Send(m);
}

void Agent::OnJobExit(const JobExit& exit) {
  const std::vector<uint32_t>& gpus = exit.gpus;
  // An attempt that ended while no agent ran: its GPUs' counters have moved
  // on since (maybe for another job), so its energy is unknown: 0.
  const uint64_t energy_start = exit.energy_at_start_mj;
  const uint64_t energy_end = exit.while_away ? 0 : EnergyOf(gpus);
  if (!exit.while_away) {
    for (uint32_t g : gpus) backend_->SetLoad(g, 0);
  }
  v1::AgentMessage m;
  v1::JobUpdate* u = m.mutable_job_update();
  u->set_job_id(exit.job_id);
  u->set_attempt(exit.attempt);
  u->set_phase(v1::JOB_PHASE_EXITED);
  *u->mutable_time() = ToProtoTime(exit.end_time);
  u->set_exit_code(exit.exit_code);
  u->set_signal(exit.signal);
  u->set_max_runtime_exceeded(exit.max_runtime_exceeded);
  *u->mutable_start_time() = ToProtoTime(exit.start_time);
  u->set_energy_mj(energy_end >= energy_start ? energy_end - energy_start : 0);
  if (exit.supervisor_lost) {
    u->set_message("its supervisor vanished; what was left was killed");
  } else if (exit.max_runtime_exceeded) {
    u->set_message("max runtime exceeded");
  } else if (exit.signal != 0) {
    u->set_message(absl::StrCat("killed by signal ", exit.signal));
  } else {
    u->set_message(absl::StrCat("exited with code ", exit.exit_code));
  }
  log::Log(log::Level::kInfo, "job-exit",
           {{"job", exit.job_id},
            {"node", options_.node_name},
            {"attempt", absl::StrCat(exit.attempt)},
            {"msg", u->message()}});
  {
    absl::MutexLock lock(&mu_);
    finished_.push_back(*u);
    while (finished_.size() > options_.max_finished_kept) finished_.pop_front();
  }
  Send(m);
}

}  // namespace joule::agent
