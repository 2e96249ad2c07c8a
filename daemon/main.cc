// jouled: the Joule daemon. See docs/cli.md and docs/architecture.md.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/cli_parse.h"
#include "common/endpoints.h"
#include "common/log.h"
#include "common/mutex_mode.h"
#include "common/systemd_notify.h"
#include "common/units.h"
#include "daemon/daemon.h"
#include "daemon/ha_daemon.h"

int main(int argc, char** argv) {
  joule::UseReleaseMutexMode();
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
  // High availability on etcd (docs/ha.md).
  std::string store = "rocksdb", etcd_endpoints, lease_ttl = "3s";
  joule::daemon::HaOptions ha;
  app.add_option("--store", store, "rocksdb (one machine) or etcd (HA)")
      ->check(CLI::IsMember({"rocksdb", "etcd"}));
  app.add_option("--etcd-endpoints", etcd_endpoints,
                 "etcd client URLs, comma-separated");
  app.add_option("--etcd-prefix", ha.prefix, "key prefix in etcd");
  app.add_option("--etcd-ca", ha.etcd.ca_file, "CA (PEM) of etcd's TLS");
  app.add_option("--etcd-cert", ha.etcd.cert_file, "client certificate (PEM)");
  app.add_option("--etcd-key", ha.etcd.key_file, "client key (PEM)");
  app.add_option("--etcd-max-txn-ops", ha.max_txn_ops,
                 "etcd's --max-txn-ops")->check(CLI::Range(16, 1 << 20));
  app.add_option("--etcd-max-request-bytes", ha.max_request_bytes,
                 "etcd's --max-request-bytes")
      ->check(CLI::Range(65536, 1 << 30));
  app.add_option("--advertise", ha.advertise,
                 "HOST:PORT clients and agents reach this jouled at");
  app.add_option("--leader-lease-ttl", lease_ttl, "leader lease TTL");
  std::string dedup_window = "840h";
  app.add_option("--usage-dedup-window", dedup_window,
                 "etcd: keep usage idempotency records this long");
  joule::log::LogOptions log_options;
  joule::log::AddLogFlags(app, &log_options);
  joule::AddVersionFlag(app, "jouled");
  JOULE_CLI_PARSE(app, "jouled", argc, argv);
  if (absl::Status s = joule::log::ApplyLogOptions(log_options); !s.ok()) {
    fprintf(stderr, "jouled: %s\n", std::string(s.message()).c_str());
    return 2;
  }

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
    options.config_path = config_path;
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // SIGHUP reloads the config (blocked here, waited for below; an HA
  // jouled leaves it pending).
  sigset_t blocked = stop_signals;
  sigaddset(&blocked, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  if (store == "etcd") {
    auto eps = joule::ParseEndpoints(etcd_endpoints, "--etcd-endpoints");
    auto ttl = joule::ParseNonNegativeDuration(lease_ttl, "--leader-lease-ttl");
    auto window =
        joule::ParseNonNegativeDuration(dedup_window, "--usage-dedup-window");
    if (window.ok() && *window < absl::Hours(1)) {
      window = absl::InvalidArgumentError(
          "--usage-dedup-window: must be at least 1h (e.g. 840h = 35 days)");
    }
    for (const absl::Status& s :
         {eps.status(), ttl.status(), window.status()}) {
      if (!s.ok()) {
        fprintf(stderr, "jouled: %s\n", std::string(s.message()).c_str());
        return 2;
      }
    }
    options.usage_dedup_window = *window;
    ha.etcd.endpoints = *eps;
    ha.lease_ttl = *ttl;
    return joule::daemon::RunHaDaemon(options, ha, stop_signals);
  }
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
    fprintf(stderr, "jouled: dashboard on http://%s:%d/\n",
            metrics_listen.substr(0, metrics_listen.rfind(':')).c_str(),
            (*daemon)->metrics_port());
  }
  joule::systemd::NotifyReady("serving on " + listen);
  std::thread signals([&] {
    int sig = 0;
    for (;;) {
      sigwait(&blocked, &sig);
      if (sig != SIGHUP) break;
      // Logged and recorded as an event by the reloader, either way.
      auto r = (*daemon)->ReloadConfig();
      fprintf(stderr, "jouled: SIGHUP: config reload %s\n",
              r.ok() ? "applied" : std::string(r.status().message()).c_str());
    }
    fprintf(stderr, "jouled: signal %d, shutting down\n", sig);
    joule::systemd::NotifyStopping();
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
