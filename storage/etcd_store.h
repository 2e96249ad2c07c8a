#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "storage/etcd_client.h"
#include "storage/store.h"

namespace joule::storage {

// A Store on etcd v3 (docs/ha.md). Key layout: `<prefix>/<table>/<key>`,
// the key's bytes as they are (etcd orders keys bytewise, as RocksDB does).
//
// Write: one etcd Txn per WriteBatch, all ops in its success branch. When a
// fence is set (the jouled holds leadership, storage/leader_election.h) the
// Txn compares the leader key's create revision with the one this jouled
// created; a deposed leader's Txn fails that compare and applies nothing.
// Several ops on one key collapse to the last one (etcd refuses duplicate
// keys in a Txn; the result is the same as applying them in order).
//
// Group commit: while one Txn is in flight, concurrent Writes queue; the
// first writer in the queue then sends the queued batches, in queue order,
// as ONE fenced Txn (as many as fit max_txn_ops and max_request_bytes; at
// least one), and every writer of the group gets that Txn's result. A group
// is atomic (all its batches or none), so each batch still is; batches of
// one thread are in separate groups in their order (a Write returns only
// after its group committed). Concurrent batches are applied in queue
// order, as RocksDB's write group does; ops on the same key across batches
// of a group collapse to the last. A failure of the Txn is every writer's
// failure (nothing of the group was written, or the outcome is unknown for
// all of them).
// Errors of Write:
//   FAILED_PRECONDITION  the fence compare failed: this jouled is no longer
//                        leader; nothing was written. Latched: every later
//                        Write fails the same way until the fence is reset.
//   UNAVAILABLE          no etcd member could take it (nothing written), or
//                        the outcome is unknown (IsOutcomeUnknown): with a
//                        fence the store latches as deposed too, since its
//                        owner's memory may no longer match etcd; it must
//                        step down and reload.
//   RESOURCE_EXHAUSTED   the batch is over max_txn_ops or max_request_bytes
//                        (checked here, before sending), or etcd's quota is
//                        full; nothing written. Callers that write big
//                        batches split them first (Ledger::RecordUsage).
// Get is a linearizable Range. Scan pages through [prefix, prefix end): a
// first page of at most 16 keys, then pages of about scan_page_bytes (at
// most scan_page keys, at least one), all pages at the revision of the first,
// so one Scan sees one consistent snapshot; `fn` may call back into the store.
// Unknown tables read as empty (etcd has no tables).
//
// Owns nothing but its fence state; the client is borrowed. Thread-safe.
class EtcdStore final : public Store {
 public:
  struct Options {
    std::string prefix = "/joule";
    // etcd's --max-txn-ops and --max-request-bytes (etcd's defaults).
    int64_t max_txn_ops = 128;
    int64_t max_request_bytes = 1536 * 1024;
    int64_t scan_page = 2048;
    // A Scan's pages after the first hold about this many bytes (at most
    // scan_page keys): tables of large values (usage_packs) are read in
    // small pages, tables of small ones in pages of scan_page.
    int64_t scan_page_bytes = 4 << 20;
  };
  EtcdStore(EtcdClient* client, Options options);

  absl::Status Write(const WriteBatch& batch,
                     const WriteOptions& options) override;
  absl::StatusOr<std::optional<std::string>> Get(std::string_view table,
                                                 std::string_view key) override;
  absl::Status Scan(std::string_view table, std::string_view prefix,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override;
  // max_txn_ops, and no more ops than fit max_request_bytes at 512 bytes
  // each (a usage record with its key is ~200).
  int64_t max_batch_ops() const override {
    return std::min(options_.max_txn_ops, options_.max_request_bytes / 512);
  }
  // max_request_bytes less the Txn's header and, per op, the key prefix
  // and framing this store adds.
  int64_t max_batch_bytes() const override;

  // From now on every Write requires `leader_key` to have `create_revision`.
  // Clears the deposed latch.
  void SetFence(std::string leader_key, int64_t create_revision);
  // Writes are unconditional again (tests, tools). Clears the latch.
  void ClearFence();
  // A Write found this jouled deposed (or its outcome unknown).
  bool deposed() const;
  // Txns sent and batches written by them, since construction (group
  // commit: batches >= txns).
  int64_t txns_sent() const;
  int64_t batches_committed() const;
  // Writes waiting in the queue (the one in flight included).
  int64_t queued() const;
  // Called once, outside any lock, when the store latches deposed.
  void set_on_deposed(std::function<void(const absl::Status&)> fn);

  // The etcd key of (table, key), for tools and tests.
  std::string EtcdKey(std::string_view table, std::string_view key) const;
  EtcdClient* client() { return client_; }

 private:
  // One queued Write: its ops (collapsed, in order), and its result.
  struct Writer {
    std::vector<etcdserverpb::RequestOp> ops;
    int64_t bytes = 0;  // serialized size of `ops`
    bool lead = false;  // this writer sends the next group
    bool done = false;
    absl::Status status;
  };
  void Depose(const absl::Status& why);
  // Sends `group` (front of the queue) as one Txn; returns its status.
  absl::Status CommitGroup(const std::vector<Writer*>& group);

  EtcdClient* const client_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::string fence_key_ ABSL_GUARDED_BY(mu_);
  int64_t fence_revision_ ABSL_GUARDED_BY(mu_) = 0;
  bool deposed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status deposed_why_ ABSL_GUARDED_BY(mu_);
  std::function<void(const absl::Status&)> on_deposed_ ABSL_GUARDED_BY(mu_);

  // Group commit: the writers waiting, the first one leads when `lead`.
  mutable absl::Mutex queue_mu_;
  std::deque<Writer*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool committing_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t txns_ ABSL_GUARDED_BY(queue_mu_) = 0;
  int64_t batches_ ABSL_GUARDED_BY(queue_mu_) = 0;
};

// The first key after every key starting with `prefix` ("\0" when there is
// none: the whole keyspace from prefix on), etcd's range_end for a prefix.
std::string PrefixEnd(std::string_view prefix);

}  // namespace joule::storage
