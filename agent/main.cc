// joule-agent: one per GPU node. See docs/cli.md.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "CLI/CLI.hpp"
#include "agent/agent.h"
#include "agent/nvml_backend.h"
#include "agent/sim_backend.h"
#include "common/gpu_catalog.h"
#include "common/units.h"

namespace {

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "node";
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
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
  app.add_option("--log-dir", log_dir,
                 "job logs (default /tmp/joule-agent-NODE)");
  app.add_option("--address", address,
                 "address other nodes reach this one at (JOULE_MASTER_ADDR)");
  app.add_option("--nvml-library", nvml_library, "NVML library to dlopen");
  CLI11_PARSE(app, argc, argv);

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
  if (log_dir.empty()) log_dir = "/tmp/joule-agent-" + node_name;

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

  joule::agent::AgentOptions options;
  options.server = server;
  options.node_name = node_name;
  options.address = address;
  options.report_interval = *interval;
  options.report_interval_fixed = interval_flag->count() > 0;
  options.log_dir = log_dir;
  joule::agent::Agent agent(options, backend.get(), clock);

  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    agent.Shutdown();
  });
  // Run() returns only after Shutdown(), i.e. after the signal arrived.
  agent.Run();
  signals.join();
  fprintf(stderr, "joule-agent: stopped\n");
  return 0;
}
