#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "storage/store.h"

namespace joule::storage {

// A Store over one RocksDB database: one column family per table. Opens every
// column family already in the database (so data of tables this build does
// not know survives) and creates the missing `tables`. Owns the DB and its
// handles; closes them in the destructor. Thread-safe (RocksDB is).
class RocksDbStore final : public Store {
 public:
  struct Options {
    std::string path;
    std::vector<std::string> tables = AllTables();
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

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

}  // namespace joule::storage
