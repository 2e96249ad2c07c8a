#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "joule/v1/joule.pb.h"
#include "storage/store.h"

namespace joule::daemon {

// The event log: numbered, timestamped events (kind, subject, message) kept
// in the store's kEvents table.
//
// Owns: the next event sequence number. Events themselves live only in the
// store; each is written in the caller's WriteBatch, so that an event is
// durable exactly when the change it describes is.
// Invariants: sequence numbers are unique and increasing (Load() resumes
// past the largest one stored); the counter itself is persisted by the
// caller (ClusterManager::PutCountersLocked) in the same batch.
// Thread-safety: externally synchronized. Every method needs the lock the
// owner passes at construction (the ClusterManager's mu_), except List(),
// which reads only the store.
class EventLog {
 public:
  EventLog(absl::Mutex* mu, storage::Store* store, const Clock* clock,
           std::function<void(const v1::Event& e)> on_event)
      : mu_(mu), store_(store), clock_(clock), on_event_(std::move(on_event)) {}

  // Adds one event to `batch` (written when the caller commits it) and
  // returns it.
  v1::Event Add(storage::WriteBatch* batch, std::string kind,
                std::string subject, std::string message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes a batch of informational events without a sync.
  void WriteUnsynced(const storage::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resumes numbering: at least `from_counters`, past every stored event.
  absl::Status Load(uint64_t from_counters) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t next_seq() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return next_seq_;
  }

  // Events newer than `r.since` of `r.kind`; with `only_subjects` set, only
  // those whose subject it contains. The newest `r.limit`.
  absl::StatusOr<std::vector<v1::Event>> List(
      const v1::ListEventsRequest& r,
      const absl::flat_hash_set<std::string>* only_subjects) const;

  // Deletes the events whose time is before `cutoff`, oldest first (the
  // table is keyed by sequence number, so in time order), in writes of at
  // most `max_batch_ops` deletes (0: 1,000), stopping at the first event
  // at or after `cutoff`. Returns how many it deleted. Events are only read
  // from the store, and the counter lives in `meta`, so nothing else
  // changes. Reads and writes only the store (no lock needed).
  absl::StatusOr<int64_t> Compact(absl::Time cutoff,
                                  int64_t max_batch_ops) const;

 private:
  absl::Mutex* const mu_;
  storage::Store* const store_;
  const Clock* const clock_;
  const std::function<void(const v1::Event& e)> on_event_;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace joule::daemon
