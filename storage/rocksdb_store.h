#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "storage/store.h"

namespace joule::storage {

// A Store over one RocksDB database: one column family per table. Opens every
// column family already in the database (so data of tables this build does
// not know survives) and creates the missing `tables`. Owns the DB and its
// handles; closes them in the destructor. Thread-safe (RocksDB is; the
// failure state has its own lock).
//
// Too little free space, or a failed write (disk full, I/O error), puts the
// store in a failed state:
// writes answer UNAVAILABLE ("storage: no space left on device") without
// touching RocksDB again, reads keep working, and every write attempt at
// most every 200 ms asks RocksDB to resume; once it has, writes work again.
class RocksDbStore final : public Store {
 public:
  struct Options {
    std::string path;
    std::vector<std::string> tables = AllTables();
    // Writes are refused (UNAVAILABLE) while the file system holding the
    // database has less free space than this (or than twice the batch),
    // before RocksDB runs out: a write that fails inside RocksDB's WAL can
    // abort the process (a RocksDB assertion).
    uint64_t min_free_bytes = 64 << 20;
  };
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(
      const Options& options);
  ~RocksDbStore() override;

  absl::Status Write(const WriteBatch& batch,
                     const WriteOptions& options) override;
  absl::StatusOr<std::optional<std::string>> Get(std::string_view table,
                                                 std::string_view key) override;
  absl::Status Scan(std::string_view table, std::string_view prefix,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override;

  // Flushes memtables and closes the database; further calls fail.
  absl::Status Close();

 private:
  RocksDbStore() = default;
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> Handle(std::string_view table);
  // OK when writes may be tried; else the failure (and maybe a resume try).
  absl::Status WritableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fail_mu_);

  std::string path_;
  uint64_t min_free_bytes_ = 0;
  absl::Mutex fail_mu_;
  absl::Status failed_ ABSL_GUARDED_BY(fail_mu_);  // OK = healthy
  absl::Time next_resume_ ABSL_GUARDED_BY(fail_mu_) = absl::InfinitePast();

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

}  // namespace joule::storage
