#pragma once

#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "storage/store.h"

namespace joule::storage {

// An in-memory Store for joule-sim and unit tests: same semantics as
// RocksDbStore (atomic batches, ordered scans), no durability. Thread-safe.
// Tables are created on first write; reads of unknown tables see nothing.
class MemoryStore final : public Store {
 public:
  absl::Status Write(const WriteBatch& batch,
                     const WriteOptions& options) override;
  absl::StatusOr<std::optional<std::string>> Get(std::string_view table,
                                                 std::string_view key) override;
  absl::Status Scan(std::string_view table, std::string_view prefix,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override;
  // Number of writes so far (for tests that check one batch per call).
  int64_t write_count() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string,
                      std::map<std::string, std::string, std::less<>>>
      tables_ ABSL_GUARDED_BY(mu_);
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace joule::storage
