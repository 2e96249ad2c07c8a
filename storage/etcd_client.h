#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcd/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace joule::storage {

struct EtcdClientOptions {
  // Members' client URLs: "http://127.0.0.1:2379", "https://host:2379" or
  // plain "host:port". At least one.
  std::vector<std::string> endpoints;
  // TLS: PEM files. A CA (or an https:// endpoint) turns TLS on; cert and key
  // are the client certificate for etcd's --client-cert-auth.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Deadline of one call to one member.
  absl::Duration timeout = absl::Seconds(3);
};

// True when `s` came from a call whose outcome is unknown: it may or may not
// have been applied (the member died with the request in flight, or the
// request timed out inside etcd).
bool IsOutcomeUnknown(const absl::Status& s);

// Lets another thread end an EtcdClient::WaitForDelete early (and every
// later one at once). Thread-safe.
class WatchCanceller {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class EtcdClient;
  mutable absl::Mutex mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// A client for the subset of etcd's v3 API in proto/etcd/: KV Range and Txn,
// Lease Grant/Revoke/KeepAlive, Watch, Compact and Status. Owns one gRPC
// channel per member and fails over between them: a call that certainly did not
// reach a member (connection refused, "no leader" on that member) is retried on
// the next member; a call whose outcome is unknown is not retried and returns
// UNAVAILABLE with IsOutcomeUnknown() true (reads are retried, they are
// safe). Every call carries etcd's "hasleader" metadata so a member cut off
// from the raft leader refuses at once instead of timing out.
//
// Errors: UNAVAILABLE (no member answered, or outcome unknown),
// RESOURCE_EXHAUSTED (etcd's request size / ops per txn / quota), other
// codes as etcd returned them; messages name the member.
// Thread-safe.
class EtcdClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const EtcdClientOptions& options);

  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& req);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& req);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(int64_t ttl_s);
  absl::Status LeaseRevoke(int64_t id);
  // One keep-alive round trip; returns the lease's new TTL in seconds (<= 0:
  // the lease no longer exists).
  absl::StatusOr<int64_t> LeaseKeepAlive(int64_t id);
  absl::Status Compact(int64_t revision);
  // Watch: blocks until `key` is deleted at a revision >= `from_revision`
  // (a resignation or a lease expiry), and returns true; also true when
  // the watch cannot tell (`from_revision` was compacted: look again).
  // False once `timeout` passed with no deletion. CANCELLED after
  // canceller->Cancel(); UNAVAILABLE when the current member cannot keep
  // the watch (down, no raft leader): the caller falls back to polling.
  // One Watch stream per call, on the current member.
  absl::StatusOr<bool> WaitForDelete(const std::string& key,
                                     int64_t from_revision,
                                     absl::Duration timeout,
                                     WatchCanceller* canceller);
  absl::StatusOr<etcdserverpb::StatusResponse> Status();

  // The member calls go to first (the last one that answered).
  std::string current_endpoint() const;
  const EtcdClientOptions& options() const { return options_; }

 private:
  struct Member {
    std::string target;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  };
  using CallFn = std::function<grpc::Status(Member&, grpc::ClientContext* ctx)>;

  explicit EtcdClient(EtcdClientOptions options) : options_(options) {}
  // Runs `fn` on the current member, then the others as described above.
  absl::Status Call(const CallFn& fn, bool idempotent, absl::string_view what);

  const EtcdClientOptions options_;
  std::vector<Member> members_;
  mutable absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace joule::storage
