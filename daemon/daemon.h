#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "grpcpp/grpcpp.h"
#include "storage/rocksdb_store.h"

namespace joule::billing {
class Ledger;
}  // namespace joule::billing

namespace joule::daemon {

struct DaemonOptions {
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = "./joule-data";
  config::ClusterConfig config = config::DefaultClusterConfig();
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  absl::Duration report_interval = absl::Seconds(1);
  const Clock* clock = &RealClock::Get();
  // A store owned by the caller (the etcd store of an HA jouled, see
  // daemon/ha_daemon.h); null: open RocksDB at data_dir.
  storage::Store* store = nullptr;
  // Ledger::set_usage_dedup_window (infinite: keep usage records forever).
  absl::Duration usage_dedup_window = absl::InfiniteDuration();
};

// jouled assembled: the RocksDB store, the cluster manager and its loops,
// billing, and the gRPC server (callback API, with reflection and the
// standard health service). Owns all of them. Shutdown() is thread-safe and
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
  ClusterManager* manager() { return manager_.get(); }
  billing::Ledger* ledger();

 private:
  struct Parts;
  Daemon() = default;

  std::unique_ptr<storage::RocksDbStore> store_;
  storage::Store* store_ptr_ = nullptr;  // store_, or options.store
  std::unique_ptr<ClusterManager> manager_;
  std::unique_ptr<Parts> parts_;  // billing and services
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace joule::daemon
