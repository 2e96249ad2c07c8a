#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule::storage {

// Table names. Each is one RocksDB column family.
inline constexpr std::string_view kNodes = "nodes";
inline constexpr std::string_view kJobs = "jobs";
inline constexpr std::string_view kJobsIdem = "jobs_idem";
inline constexpr std::string_view kEvents = "events";
inline constexpr std::string_view kDomains = "domains";
inline constexpr std::string_view kTenants = "tenants";
inline constexpr std::string_view kMeta = "meta";
inline constexpr std::string_view kPrices = "prices";
inline constexpr std::string_view kContracts = "contracts";
inline constexpr std::string_view kUsage = "usage";            // by tenant/key
inline constexpr std::string_view kUsageAgg = "usage_agg";     // aggregates
inline constexpr std::string_view kJobUsage = "job_usage";     // GPU attempts
inline constexpr std::string_view kStatements = "statements";  // finalized
inline constexpr std::string_view kTokens = "tokens";          // bearer tokens
inline constexpr std::string_view kAudit = "audit";            // audit records
inline constexpr std::string_view kClaims =
    "claims";  // preemptions in progress
// Usage records packed per RecordUsage part (billing/usage_pack.h).
inline constexpr std::string_view kUsagePacks = "usage_packs";

// Every table jouled uses; Store implementations create the missing ones.
std::vector<std::string> AllTables();

// An ordered list of puts and deletes applied atomically by Store::Write.
// Not thread-safe; build it on one thread.
class WriteBatch {
 public:
  struct Op {
    std::string table;
    std::string key;
    std::optional<std::string> value;  // nullopt = delete
  };
  void Put(std::string_view table, std::string_view key,
           std::string_view value) {
    ops_.push_back(
        Op{std::string(table), std::string(key), std::string(value)});
  }
  // Put without copying the key and value (large batches: usage imports).
  void PutMoved(std::string_view table, std::string&& key,
                std::string&& value) {
    ops_.push_back(Op{std::string(table), std::move(key), std::move(value)});
  }
  void Delete(std::string_view table, std::string_view key) {
    ops_.push_back(Op{std::string(table), std::string(key), std::nullopt});
  }
  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  void Clear() { ops_.clear(); }

 private:
  std::vector<Op> ops_;
};

struct WriteOptions {
  // Wait for the write-ahead log to reach the disk before returning. Every
  // write that acknowledges something to a client uses true.
  bool sync = true;
};

// Key-value tables with atomic multi-table batches and ordered prefix scans.
// Implementations are thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  // Atomically applies every op of `batch`.
  virtual absl::Status Write(const WriteBatch& batch,
                             const WriteOptions& options) = 0;
  // nullopt when the key is absent. NOT_FOUND if the table does not exist.
  virtual absl::StatusOr<std::optional<std::string>> Get(
      std::string_view table, std::string_view key) = 0;
  // Calls `fn` for every key starting with `prefix`, in key order, until it
  // returns false.
  virtual absl::Status Scan(
      std::string_view table, std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>&
          fn) = 0;
  // The most ops one Write accepts; 0 = no limit. Callers that may build
  // bigger batches (usage imports) split them into self-contained parts.
  virtual int64_t max_batch_ops() const { return 0; }
  // The most bytes of keys and values (as passed to the batch) one Write
  // accepts; 0 = no limit. The store's own per-op overhead (key prefixes,
  // framing) is already taken off, for up to max_batch_ops() ops.
  virtual int64_t max_batch_bytes() const { return 0; }

  absl::Status Put(std::string_view table, std::string_view key,
                   std::string_view value, const WriteOptions& options = {}) {
    WriteBatch b;
    b.Put(table, key, value);
    return Write(b, options);
  }
  absl::Status Delete(std::string_view table, std::string_view key,
                      const WriteOptions& options = {}) {
    WriteBatch b;
    b.Delete(table, key);
    return Write(b, options);
  }
};

// A Store that forwards every call to `base`: the base of decorators that
// change one call (AuditingStore, TimedStore). Thread-safe as `base` is.
class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(Store* base) : base_(base) {}
  absl::Status Write(const WriteBatch& batch,
                     const WriteOptions& options) override {
    return base_->Write(batch, options);
  }
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view table, std::string_view key) override {
    return base_->Get(table, key);
  }
  absl::Status Scan(
      std::string_view table, std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>&
          fn) override {
    return base_->Scan(table, prefix, fn);
  }
  int64_t max_batch_ops() const override { return base_->max_batch_ops(); }
  int64_t max_batch_bytes() const override { return base_->max_batch_bytes(); }

 protected:
  Store* base() const { return base_; }

 private:
  Store* const base_;
};

}  // namespace joule::storage
