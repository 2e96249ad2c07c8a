#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "daemon/metrics_server.h"
#include "metrics/registry.h"
#include "grpcpp/grpcpp.h"
#include "auth/audit.h"
#include "auth/tokens.h"
#include "storage/rocksdb_store.h"

namespace joule::billing {
class Ledger;
}  // namespace joule::billing

namespace joule::daemon {

// jouled's TLS material, as PEM text (main() reads the files).
struct TlsOptions {
  std::string cert_pem;  // the server's certificate chain
  std::string key_pem;   // its private key
  std::string ca_pem;    // the CA that signs agent certificates
};

struct DaemonOptions {
  std::string listen = "127.0.0.1:7070";
  // TLS on every connection, unless `insecure` (plaintext; refused on a
  // listen address that is not loopback). Exactly one of the two is set.
  std::optional<TlsOptions> tls;
  bool insecure = false;
  // Prometheus metrics over HTTP (loopback only); empty: off. Port 0 picks
  // a free one (metrics_port()).
  std::string metrics_listen = "127.0.0.1:9464";
  std::string data_dir = "./joule-data";
  config::ClusterConfig config = config::DefaultClusterConfig();
  // The file `config` came from (empty: built in); ReloadConfig re-reads it.
  std::string config_path;
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  absl::Duration report_interval = absl::Seconds(1);
  const Clock* clock = &RealClock::Get();
  // A store owned by the caller (the etcd store of an HA jouled, see
  // daemon/ha_daemon.h); null: open RocksDB at data_dir.
  storage::Store* store = nullptr;
  // Ledger::set_usage_dedup_window (infinite: keep usage records forever).
  absl::Duration usage_dedup_window = absl::InfiniteDuration();
};

// INVALID_ARGUMENT unless exactly one of TLS and `insecure` is set, and
// `insecure` only on a loopback listen address.
absl::Status CheckTransport(const DaemonOptions& options);
// The gRPC server credentials for `options`: TLS (requesting and verifying
// client certificates against the CA) or, with `insecure`, plaintext.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const DaemonOptions& options);

// jouled assembled: the RocksDB store, tokens and the audit log, the
// cluster manager and its loops, billing, the Gate and the gRPC server
// (callback API, TLS, with reflection and the standard health service).
// Owns all of them. On a store without tokens, Start() writes a bootstrap
// operator token to <data_dir>/operator.token (mode 0600). Shutdown() is thread-safe and
// idempotent; the destructor calls it.
class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions options);
  ~Daemon();

  // Stops accepting calls, lets in-flight ones finish (2 s at most), stops
  // the loops and closes RocksDB.
  void Shutdown();
  // Blocks until the server has shut down.
  void Wait();
  int port() const { return port_; }
  int metrics_port() const;
  ClusterManager* manager() { return manager_.get(); }
  // Re-reads options.config_path and applies its cap changes (SIGHUP,
  // joulectl config reload; daemon/config_reload.h).
  absl::StatusOr<v1::ReloadConfigResponse> ReloadConfig();
  billing::Ledger* ledger();
  // The daemon's metrics (joule_retention_deleted_total for the HA loop).
  metrics::Registry* metrics() { return metrics_.get(); }

 private:
  struct Parts;
  Daemon() = default;

  std::unique_ptr<storage::RocksDbStore> store_;
  storage::Store* store_ptr_ = nullptr;  // store_, or options.store
  std::unique_ptr<metrics::Registry> metrics_;
  std::unique_ptr<TimedStore> timed_store_;
  // Every part writes through this (audit records join the call's batch).
  std::unique_ptr<auth::AuditingStore> audited_store_;
  std::unique_ptr<auth::TokenBook> tokens_;
  std::unique_ptr<auth::AuditLog> audit_;
  std::unique_ptr<ClusterManager> manager_;
  std::unique_ptr<Parts> parts_;  // billing and services
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace joule::daemon
