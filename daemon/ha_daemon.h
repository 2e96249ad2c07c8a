#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/daemon.h"
#include "grpcpp/grpcpp.h"
#include "storage/etcd_client.h"
#include "storage/etcd_store.h"
#include "storage/leader_election.h"

namespace joule::daemon {

struct HaOptions {
  storage::EtcdClientOptions etcd;
  std::string prefix = "/joule";  // every key of this cluster is under it
  std::string advertise;          // HOST:PORT clients and agents reach us at
  absl::Duration lease_ttl = absl::Seconds(3);
  int64_t max_txn_ops = 128;                // etcd's --max-txn-ops
  int64_t max_request_bytes = 1536 * 1024;  // etcd's --max-request-bytes
};

// The message and trailing metadata a standby answers every call with
// (UNAVAILABLE): "jouled at SELF is a standby; the leader is at LEADER".
inline constexpr char kLeaderMetadata[] = "x-joule-leader";

// jouled with its state in etcd (docs/ha.md). One role loop thread:
//   standby: a gRPC server on `listen` that answers every call with
//            UNAVAILABLE naming the leader (message and x-joule-leader
//            trailing metadata), while campaigning (LeaderElection);
//   leader:  on winning, the standby server stops, the store is fenced on
//            the leader key's create revision, and a Daemon starts on the
//            same address over the EtcdStore: it loads every table from
//            etcd and starts the loops; agents re-register and their
//            running jobs are re-adopted.
// When leadership is lost (the lease could not be renewed within its TTL,
// or a write found the fence changed or had an unknown outcome), the
// Daemon is shut down (its memory is dropped, nothing more is written) and
// the loop goes back to standby. Owns the etcd client, store, election,
// servers and Daemon. Thread-safe: Shutdown() from any thread.
class HaDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<HaDaemon>> Start(DaemonOptions options,
                                                         HaOptions ha);
  ~HaDaemon();

  // Resigns (so a standby takes over at once), stops the Daemon or the
  // standby server. Idempotent.
  void Shutdown();
  // Blocks until Shutdown() has completed.
  void Wait();
  bool leading() const;

 private:
  class StandbyService;
  HaDaemon() = default;
  void Run();
  absl::Status StartStandby();
  void StopStandby();
  void OnLost(const absl::Status& why);

  DaemonOptions options_;
  HaOptions ha_;
  std::unique_ptr<storage::EtcdClient> client_;
  std::unique_ptr<storage::EtcdStore> store_;
  std::unique_ptr<storage::LeaderElection> election_;
  std::unique_ptr<StandbyService> standby_service_;
  std::unique_ptr<grpc::Server> standby_;
  std::unique_ptr<Daemon> daemon_;  // while leading; only Run() touches it
  std::thread runner_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // Run() has returned
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
};

// jouled's main for --store etcd: starts, logs, waits for SIGTERM/SIGINT
// (already blocked in `stop_signals`), shuts down. Returns the exit code.
int RunHaDaemon(DaemonOptions options, HaOptions ha,
                const sigset_t& stop_signals);

}  // namespace joule::daemon
