// jouled: the Joule daemon. See docs/cli.md and docs/architecture.md.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/units.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"jouled: the Joule GPU cluster scheduler and billing daemon"};
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = "./joule-data";
  std::string config_path;
  std::string heartbeat_timeout = "5s";
  std::string report_interval = "1s";
  std::string tls_cert, tls_key, tls_ca;
  bool insecure = false;
  app.add_option("--listen", listen, "HOST:PORT to serve gRPC on");
  app.add_option("--data-dir", data_dir, "RocksDB directory");
  app.add_option("--config", config_path,
                 "cluster configuration (protobuf text format)");
  app.add_option("--heartbeat-timeout", heartbeat_timeout,
                 "a node silent this long is unreachable");
  app.add_option("--report-interval", report_interval,
                 "report interval asked of agents");
  app.add_option("--tls-cert", tls_cert,
                 "jouled's TLS certificate chain (PEM)");
  app.add_option("--tls-key", tls_key, "its private key (PEM)");
  app.add_option("--tls-ca", tls_ca,
                 "the CA that signs agent certificates (PEM)");
  app.add_flag("--insecure", insecure,
               "plaintext gRPC (loopback listen addresses only)");
  std::string metrics_listen = "127.0.0.1:9464";
  app.add_option("--metrics-listen", metrics_listen,
                 "HOST:PORT for Prometheus metrics over HTTP (loopback only; "
                 "empty: off)");
  CLI11_PARSE(app, argc, argv);

  joule::daemon::DaemonOptions options;
  options.listen = listen;
  options.data_dir = data_dir;
  auto hb =
      joule::ParseNonNegativeDuration(heartbeat_timeout, "--heartbeat-timeout");
  auto ri =
      joule::ParseNonNegativeDuration(report_interval, "--report-interval");
  if (!hb.ok() || !ri.ok()) {
    fprintf(
        stderr, "jouled: %s\n",
        std::string((hb.ok() ? ri.status() : hb.status()).message()).c_str());
    return 2;
  }
  options.insecure = insecure;
  options.metrics_listen = metrics_listen;
  if (!tls_cert.empty() || !tls_key.empty() || !tls_ca.empty()) {
    if (insecure || tls_cert.empty() || tls_key.empty() || tls_ca.empty()) {
      fprintf(stderr,
              "jouled: --tls-cert, --tls-key and --tls-ca go together, and "
              "not with --insecure\n");
      return 2;
    }
    joule::daemon::TlsOptions tls;
    for (auto [path, out] : {std::pair{&tls_cert, &tls.cert_pem},
                             std::pair{&tls_key, &tls.key_pem},
                             std::pair{&tls_ca, &tls.ca_pem}}) {
      std::ifstream in(*path);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in || ss.str().empty()) {
        fprintf(stderr, "jouled: cannot read %s\n", path->c_str());
        return 2;
      }
      *out = ss.str();
    }
    options.tls = std::move(tls);
  }
  options.heartbeat_timeout = *hb;
  options.report_interval = *ri;
  if (!config_path.empty()) {
    auto cfg = joule::config::LoadClusterConfig(config_path);
    if (!cfg.ok()) {
      fprintf(stderr, "jouled: %s\n",
              std::string(cfg.status().message()).c_str());
      return 2;
    }
    options.config = *cfg;
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto daemon = joule::daemon::Daemon::Start(options);
  if (!daemon.ok()) {
    fprintf(stderr, "jouled: %s\n",
            std::string(daemon.status().message()).c_str());
    return daemon.status().code() == absl::StatusCode::kInvalidArgument ? 2
                                                                         : 1;
  }
  fprintf(stderr, "jouled: serving on %s (port %d, %s), data in %s\n",
          listen.c_str(), (*daemon)->port(),
          insecure ? "plaintext" : "TLS", data_dir.c_str());
  if ((*daemon)->metrics_port() > 0) {
    fprintf(stderr, "jouled: metrics on http://%s:%d/metrics\n",
            metrics_listen.substr(0, metrics_listen.rfind(':')).c_str(),
            (*daemon)->metrics_port());
  }
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "jouled: signal %d, shutting down\n", sig);
    (*daemon)->Shutdown();
  });
  // The server stops only through Shutdown(), which the signal thread runs:
  // wait for both before tearing down.
  (*daemon)->Wait();
  signals.join();
  daemon->reset();
  fprintf(stderr, "jouled: stopped\n");
  return 0;
}
