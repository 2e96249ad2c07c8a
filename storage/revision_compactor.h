#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "storage/etcd_client.h"

namespace joule::storage {

// etcd keeps every old revision of every key until compacted. The leader
// calls Step() periodically (HaDaemon: every 10 minutes); each Step compacts
// the keyspace to the revision the previous Step saw, so one interval of
// history stays readable (a Scan in progress reads at its first page's
// revision, which must not be compacted under it) and everything older is
// freed inside etcd's database (`etcdctl defrag` returns it to the file
// system). Independent of etcd's own --auto-compaction-*; both may run.
// Borrows the client. Not thread-safe (one caller).
class RevisionCompactor {
 public:
  explicit RevisionCompactor(EtcdClient* client) : client_(client) {}
  // Returns the revision compacted to (0: nothing this time: the first
  // Step, or no new revision since).
  absl::StatusOr<int64_t> Step();

 private:
  EtcdClient* const client_;
  int64_t seen_ = 0;       // the current revision at the previous Step
  int64_t compacted_ = 0;  // the last revision compacted to
};

}  // namespace joule::storage
