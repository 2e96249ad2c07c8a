// joule-agent: one per GPU node. See docs/cli.md.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>
#include <tuple>

#include "CLI/CLI.hpp"
#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/cgroup.h"
#include "agent/job_record.h"
#include "agent/nvml_backend.h"
#include "agent/sim_backend.h"
#include "common/cli_parse.h"
#include "common/gpu_catalog.h"
#include "common/log.h"
#include "common/mutex_mode.h"
#include "common/systemd_notify.h"
#include "common/resources.h"
#include "common/units.h"
#include "metrics/http_server.h"

namespace {

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "node";
  return buf;
}

// joule-job-supervisor next to this binary.
std::string DefaultSupervisor() {
  char buf[4096] = {0};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string self = n > 0 ? std::string(buf, n) : "";
  const size_t slash = self.rfind('/');
  return slash == std::string::npos
             ? "joule-job-supervisor"
             : self.substr(0, slash + 1) + "joule-job-supervisor";
}

}  // namespace

int main(int argc, char** argv) {
  joule::UseReleaseMutexMode();
  CLI::App app{
      "joule-agent: reports a GPU node's telemetry to jouled and "
      "runs the jobs it is given"};
  std::string server = "127.0.0.1:7070";
  std::string node_name = Hostname();
  std::string backend_name = "sim";
  uint32_t sim_gpus = 8;
  std::string sim_model = "H100";
  std::string report_interval = "1s";
  std::string log_dir;
  std::string address = "127.0.0.1";
  std::string nvml_library = "libnvidia-ml.so.1";
  joule::transport::ClientOptions transport;
  std::string state_dir = "/var/lib/joule-agent";
  std::string supervisor = DefaultSupervisor();
  std::string cgroup_root = "auto";
  std::string job_memory_per_gpu, job_cpus_per_gpu;
  std::string job_user;
  std::vector<std::string> tenant_users;
  std::string tenant_user_file;
  bool allow_root_jobs = false;
  app.add_option("--server", server,
                 "jouled address HOST:PORT, or several: a,b,c (HA)");
  app.add_option("--node-name", node_name, "node name (default: hostname)");
  app.add_option("--gpu-backend", backend_name, "sim, nvml or auto")
      ->check(CLI::IsMember({"sim", "nvml", "auto"}));
  app.add_option("--sim-gpus", sim_gpus, "simulated GPUs")
      ->check(CLI::Range(1, 64));
  app.add_option("--sim-gpu-model", sim_model, "simulated GPU model");
  CLI::Option* interval_flag =
      app.add_option("--report-interval", report_interval,
                     "telemetry interval, e.g. 1s, 500ms");
  app.add_option("--log-dir", log_dir, "job logs (default STATE_DIR/logs)");
  app.add_option("--state-dir", state_dir,
                 "agent state: job records, logs (created 0700)");
  app.add_option("--job-user", job_user,
                 "Unix user jobs run as (default: nobody when root)");
  app.add_option("--tenant-user", tenant_users,
                 "TENANT=USER: run this tenant's jobs as USER (repeatable)");
  app.add_option("--tenant-user-file", tenant_user_file,
                 "file of TENANT=USER lines");
  app.add_flag("--allow-root-jobs", allow_root_jobs,
               "allow jobs to run as root");
  app.add_option("--supervisor", supervisor,
                 "joule-job-supervisor binary (default: next to this one)");
  app.add_option("--cgroup-root", cgroup_root,
                 "cgroup v2 dir for job cgroups, 'auto' (v2 or hybrid "
                 "/sys/fs/cgroup) or 'none'");
  app.add_option("--job-memory-per-gpu", job_memory_per_gpu,
                 "memory limit per GPU for jobs that set none (e.g. 64GiB)");
  app.add_option("--job-cpus-per-gpu", job_cpus_per_gpu,
                 "CPU limit per GPU for jobs that set none (e.g. 8)");
  app.add_option("--address", address,
                 "address other nodes reach this one at (JOULE_MASTER_ADDR)");
  app.add_option("--nvml-library", nvml_library, "NVML library to dlopen");
  app.add_option("--ca", transport.ca_file,
                 "the cluster CA that jouled's certificate is checked against");
  app.add_option("--tls-cert", transport.cert_file,
                 "this node's certificate (CN = the node name)");
  app.add_option("--tls-key", transport.key_file, "its private key");
  app.add_flag("--insecure", transport.insecure,
               "plaintext gRPC (with --token-file: a node-bound agent token)");
  app.add_option("--token-file", transport.token_file,
                 "file holding an agent token bound to this node");
  joule::log::LogOptions log_options;
  joule::log::AddLogFlags(app, &log_options);
  std::string metrics_listen = "127.0.0.1:9465";
  CLI::Option* metrics_flag = app.add_option(
      "--metrics-listen", metrics_listen,
      "HOST:PORT for this node's Prometheus metrics over HTTP (loopback "
      "only; empty: off)");
  joule::AddVersionFlag(app, "joule-agent");
  JOULE_CLI_PARSE(app, "joule-agent", argc, argv);
  if (absl::Status s = joule::log::ApplyLogOptions(log_options); !s.ok()) {
    fprintf(stderr, "joule-agent: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (!transport.insecure &&
      (transport.ca_file.empty() ||
       (transport.cert_file.empty() && transport.token_file.empty()))) {
    fprintf(stderr,
            "joule-agent: give --ca and --tls-cert/--tls-key (or a "
            "--token-file), or --insecure with --token-file\n");
    return 2;
  }
  if (transport.insecure && transport.token_file.empty()) {
    fprintf(stderr,
            "joule-agent: --insecure needs --token-file (a node-bound agent "
            "token)\n");
    return 2;
  }

  auto interval =
      joule::ParseNonNegativeDuration(report_interval, "--report-interval");
  if (!interval.ok() || *interval < absl::Milliseconds(10)) {
    fprintf(stderr,
            "joule-agent: --report-interval: want a duration >= 10ms\n");
    return 2;
  }
  if (auto servers = joule::ParseEndpoints(server, "--server");
      !servers.ok()) {
    fprintf(stderr, "joule-agent: %s\n",
            std::string(servers.status().message()).c_str());
    return 2;
  }
  if (node_name.empty()) {
    fprintf(stderr, "joule-agent: --node-name: must not be empty\n");
    return 2;
  }
  joule::agent::JobUserPolicy job_users;
  job_users.default_user = job_user;
  job_users.allow_root = allow_root_jobs;
  absl::Status users = joule::agent::AddTenantUsers(
      tenant_users, "--tenant-user", &job_users.tenant_users);
  if (users.ok() && !tenant_user_file.empty()) {
    std::ifstream in(tenant_user_file);
    if (!in) {
      users = absl::NotFoundError(tenant_user_file + ": cannot read");
    } else {
      std::vector<std::string> lines;
      for (std::string l; std::getline(in, l);) lines.push_back(l);
      users = joule::agent::AddTenantUsers(lines, tenant_user_file,
                                           &job_users.tenant_users);
    }
  }
  if (!users.ok()) {
    fprintf(stderr, "joule-agent: %s\n", std::string(users.message()).c_str());
    return 2;
  }

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const joule::Clock* clock = &joule::RealClock::Get();
  std::unique_ptr<joule::agent::GpuBackend> backend;
  if (backend_name == "sim") {
    joule::agent::SimGpuOptions o;
    o.count = sim_gpus;
    o.model = sim_model;
    o.node_name = node_name;
    if (const joule::KnownGpu* k = joule::FindKnownGpu(sim_model)) {
      o.tdp_mw = k->tdp_mw;
      o.min_limit_mw = k->min_limit_mw;
      o.max_limit_mw = k->max_limit_mw;
      o.idle_mw = k->idle_mw;
      o.memory_bytes = k->memory_gib << 30;
    }
    backend = std::make_unique<joule::agent::SimGpuBackend>(o, clock);
  } else {
    joule::agent::NvmlOptions o;
    o.library = nvml_library;
    auto nvml = joule::agent::NewNvmlBackend(o);
    if (!nvml.ok()) {
      fprintf(stderr, "joule-agent: --gpu-backend %s: %s\n",
              backend_name.c_str(),
              std::string(nvml.status().message()).c_str());
      return 1;
    }
    backend = std::move(*nvml);
  }

  // After the backend: its errors (exit 1) come first.
  if (log_dir.empty()) log_dir = state_dir + "/logs";
  for (const std::string& dir : {state_dir, state_dir + "/jobs", log_dir}) {
    absl::Status s = joule::agent::MakePrivateDir(dir);
    if (!s.ok()) {
      fprintf(stderr, "joule-agent: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  if (access(supervisor.c_str(), X_OK) != 0) {
    fprintf(stderr, "joule-agent: --supervisor: %s is not executable\n",
            supervisor.c_str());
    return 2;
  }
  joule::agent::CgroupSetup cgroups;
  if (cgroup_root == "auto") {
    cgroups = joule::agent::DetectCgroups("/sys/fs/cgroup", node_name);
  } else if (cgroup_root != "none") {
    cgroups = joule::agent::ExplicitCgroupRoot(cgroup_root);
  } else {
    cgroups.why_none = "--cgroup-root none";
  }
  // Loud: an operator must see that jobs are not contained.
  fprintf(stderr, "joule-agent: %s\n", cgroups.Describe().c_str());
  joule::agent::JobLimits per_gpu;
  for (auto [flag, text, parse, out] :
       {std::tuple{"--job-memory-per-gpu", &job_memory_per_gpu,
                   &joule::ParseMemoryBytes, &per_gpu.memory_bytes},
        std::tuple{"--job-cpus-per-gpu", &job_cpus_per_gpu,
                   &joule::ParseCpuMillis, &per_gpu.cpu_millis}}) {
    if (text->empty()) continue;
    auto v = parse(flag, *text);
    if (!v.ok()) {
      fprintf(stderr, "joule-agent: %s\n",
              std::string(v.status().message()).c_str());
      return 2;
    }
    *out = *v;
  }
  {
    auto who = joule::agent::ResolveJobIdentity(job_users, "");
    fprintf(stderr, "joule-agent: jobs run as %s%s\n",
            who.ok() ? who->user.c_str()
                     : std::string(who.status().message()).c_str(),
            job_users.tenant_users.empty() ? ""
                                           : " unless the tenant map says");
  }
  joule::agent::AgentOptions options;
  options.server = server;
  options.transport = transport;
  options.node_name = node_name;
  options.address = address;
  options.report_interval = *interval;
  options.report_interval_fixed = interval_flag->count() > 0;
  options.log_dir = log_dir;
  options.state_dir = state_dir + "/jobs";
  options.supervisor_path = supervisor;
  options.cgroup_root = cgroups.v2_dir;
  options.cgroup_v1_roots = cgroups.v1_dirs;
  options.can_limit_memory = cgroups.memory;
  options.can_limit_cpu = cgroups.cpu;
  options.isolation = cgroups.Describe();
  options.memory_per_gpu_bytes = per_gpu.memory_bytes;
  options.cpu_millis_per_gpu = per_gpu.cpu_millis;
  options.job_users = job_users;
  joule::agent::Agent agent(options, backend.get(), clock);

  // The node's metrics. The default address is taken by the first agent of
  // a machine; later ones (tests, demos) go without unless given one.
  joule::metrics::Registry registry;
  std::unique_ptr<joule::metrics::MetricsServer> metrics_server;
  if (!metrics_listen.empty()) {
    joule::agent::GpuBackend* b = backend.get();
    registry.AddCollector([b, node_name](joule::metrics::Exposition* e) {
      joule::agent::CollectAgentMetrics(b, node_name, JOULE_VERSION, e);
    });
    auto ms = joule::metrics::MetricsServer::Start(metrics_listen, &registry);
    if (ms.ok()) {
      metrics_server = std::move(*ms);
      fprintf(stderr, "joule-agent: metrics on http://%s:%d/metrics\n",
              metrics_listen.substr(0, metrics_listen.rfind(':')).c_str(),
              metrics_server->port());
    } else if (metrics_flag->count() > 0) {
      fprintf(stderr, "joule-agent: %s\n",
              std::string(ms.status().message()).c_str());
      return ms.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    } else {
      fprintf(stderr, "joule-agent: no metrics: %s\n",
              std::string(ms.status().message()).c_str());
    }
  }

  joule::systemd::NotifyReady("node " + node_name + ", jouled at " + server);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    joule::systemd::NotifyStopping();
    agent.Shutdown();
  });
  // Run() returns only after Shutdown(), i.e. after the signal arrived.
  agent.Run();
  signals.join();
  if (metrics_server) metrics_server->Stop();
  fprintf(stderr, "joule-agent: stopped\n");
  return 0;
}
