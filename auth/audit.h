#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "joule/v1/auth.pb.h"
#include "storage/store.h"

namespace joule::auth {

// Owns the audit log (table "audit"). Records are keyed by time (unix
// micros, zero-padded), this process's boot id and a counter, so keys are
// unique across restarts and scan in time order; `seq` is the position in a
// listing. Thread-safe (stateless but for an atomic counter).
class AuditLog {
 public:
  AuditLog(storage::Store* store, const Clock* clock, std::string boot_id = "");

  // Stamps `rec` with the time and puts it into `batch`.
  void AddTo(v1::AuditRecord rec, storage::WriteBatch* batch);
  // Writes `rec` on its own (synced).
  absl::Status Write(v1::AuditRecord rec);
  // Records matching the filter, oldest first; at most req.limit (default
  // 1000), the latest ones.
  absl::StatusOr<std::vector<v1::AuditRecord>> List(
      const v1::ListAuditRequest& req) const;

 private:
  storage::Store* const store_;
  const Clock* const clock_;
  const std::string boot_id_;
  std::atomic<uint64_t> counter_{0};
};

// The audit record of the call running on this thread. While a scope is
// open, the AuditingStore puts its record (outcome "ok") into the first
// synced write the thread makes, so the record and the call's effect are
// durable together or not at all. When the scope closes and no write took
// the record (the call failed, or changed nothing), it is written on its
// own with the call's outcome. Not thread-safe: one scope per thread, for
// the duration of one call.
class AuditScope {
 public:
  AuditScope(AuditLog* log, v1::AuditRecord record);
  ~AuditScope();
  AuditScope(const AuditScope&) = delete;
  AuditScope& operator=(const AuditScope&) = delete;

  // The call's result: "ok", or "CODE: message".
  void SetOutcome(const absl::Status& status);

  // The scope open on this thread, or nullptr.
  static AuditScope* Current();
  // Called by AuditingStore: adds the record to `batch` (once).
  bool TakeInto(storage::WriteBatch* batch);
  void Untake() { taken_ = false; }

 private:
  AuditLog* const log_;
  v1::AuditRecord record_;
  AuditScope* const previous_;
  bool taken_ = false;
  absl::Status outcome_;
};

// A Store that adds the open AuditScope's record to the first synced write
// of the call (see AuditScope) and otherwise forwards to `base`.
// Thread-safe as `base` is.
class AuditingStore final : public storage::ForwardingStore {
 public:
  explicit AuditingStore(storage::Store* base) : ForwardingStore(base) {}
  absl::Status Write(const storage::WriteBatch& batch,
                     const storage::WriteOptions& options) override;
  // One op of every batch is kept for the audit record.
  int64_t max_batch_ops() const override {
    const int64_t n = ForwardingStore::max_batch_ops();
    return n > 1 ? n - 1 : n;
  }
};

// "ok" or "PERMISSION_DENIED: message".
std::string OutcomeText(const absl::Status& status);

}  // namespace joule::auth
