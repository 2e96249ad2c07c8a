#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/etcd_client.h"

namespace joule::storage {

// Leader election on etcd, as etcd's election recipe: one key, attached to
// a lease of `ttl`, created by a Txn that succeeds only while the key does
// not exist (create_revision == 0). The winner's value is its advertised
// address; its fence is the key's create revision (EtcdStore::SetFence).
// The leader keeps the lease alive every ttl/3. A standby watches the key
// (etcd Watch, from the revision it read it at) and campaigns as soon as it
// is deleted (the old leader resigned, or its lease expired `ttl` after its
// last keep-alive); it reads the key again at least every `watch_recheck`.
// Where the watch cannot be kept (the member is down or has no raft
// leader), or with `watch` false, it polls the key every `poll` instead.
//
// Leadership is lost when a keep-alive says the lease is gone, or when no
// keep-alive succeeded for `ttl` (measured from before the last successful
// one was sent, so this side gives up no later than etcd expires it).
// `on_lost` is then called once, on the keep-alive thread.
//
// Owns the keep-alive thread; borrows the client. Thread-safe.
class LeaderElection {
 public:
  struct Options {
    std::string key = "/joule/leader";
    std::string value;  // this jouled's advertised address
    absl::Duration ttl = absl::Seconds(3);
    absl::Duration poll = absl::Milliseconds(100);
    bool watch = true;
    absl::Duration watch_recheck = absl::Seconds(10);
    std::function<void(const absl::Status&)> on_lost;
  };
  LeaderElection(EtcdClient* client, Options options);
  ~LeaderElection();

  // Blocks until this instance leads (returns the leader key's create
  // revision, the fence) or Cancel() (CANCELLED). etcd errors are retried.
  absl::StatusOr<int64_t> Campaign();
  // Gives leadership up: stops the keep-alives, revokes the lease (the key
  // goes with it). Best effort; safe when not leading.
  void Resign();
  // Makes a Campaign() in progress return CANCELLED, and later ones too.
  void Cancel();

  // The leader's address as last seen (empty: none known).
  std::string leader() const;
  bool leading() const;

 private:
  void KeepAliveLoop(int64_t lease, absl::Time last_sent_ok);
  void StopKeepAlive();

  EtcdClient* const client_;
  const Options options_;
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_keepalive_ ABSL_GUARDED_BY(mu_) = false;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  WatchCanceller watch_cancel_;  // Cancel() ends a standby's watch
  std::thread keepalive_;
};

}  // namespace joule::storage
