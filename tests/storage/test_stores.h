#pragma once

// One Store of each kind for the conformance suites that run the same
// checks against every implementation (Mesos style): "memory", "rocksdb"
// and "etcd".

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/etcd_client.h"
#include "storage/etcd_store.h"
#include "storage/store.h"

namespace joule::testing {

// A store opened for one test. Owns the store and, for RocksDB, its temp
// dir (removed on destruction, after the store is closed); for etcd after a
// Reopen, the client of its own. Not thread-safe.
class TestStore {
 public:
  TestStore() = default;
  TestStore(TestStore&&) = default;
  TestStore& operator=(TestStore&&) = default;
  ~TestStore();

  // Null between Close and Reopen (RocksDB and etcd).
  storage::Store* get() const { return store_.get(); }

  // Closes the store as a stopping daemon does: RocksDB closed (its error
  // returned), etcd's store and own client dropped; memory keeps its store
  // (there is nothing on disk to reopen it from).
  absl::Status Close();
  // Closes the store if it is open and opens it again over the same data,
  // as a restarted daemon does: RocksDB on the same dir; etcd a new client
  // to the shared member and a new EtcdStore on the same prefix; memory the
  // same MemoryStore.
  absl::Status Reopen();

 private:
  friend absl::StatusOr<TestStore> OpenTestStore(
      std::string_view kind, const storage::EtcdStore::Options& etcd);
  std::string kind_;
  storage::EtcdStore::Options etcd_;  // with its prefix, for Reopen
  std::unique_ptr<storage::EtcdClient> etcd_client_;  // after a Reopen
  std::unique_ptr<storage::Store> store_;
  std::string dir_;
};

// Opens an empty store of `kind`: a MemoryStore; a RocksDbStore in a new
// temp dir; or an EtcdStore with `etcd`'s options under a key prefix of its
// own (etcd.prefix, "-" and a counter), on one real etcd member on loopback
// shared by the whole test binary (started on first use, killed by pid at
// exit). UNAVAILABLE, saying how to install it, when there is no etcd binary
// (the caller skips with that message); INVALID_ARGUMENT for an unknown kind.
absl::StatusOr<TestStore> OpenTestStore(
    std::string_view kind, const storage::EtcdStore::Options& etcd = {});

}  // namespace joule::testing
