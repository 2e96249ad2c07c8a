#pragma once

#include <cstdint>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace joule::billing {
class Ledger;
}  // namespace joule::billing
namespace joule::metrics {
class Registry;
}  // namespace joule::metrics

namespace joule::daemon {

class ClusterManager;

// Config `retention { finished_jobs events }` (docs/configuration.md);
// zero keeps forever.
struct RetentionOptions {
  absl::Duration finished_jobs = absl::ZeroDuration();
  absl::Duration events = absl::ZeroDuration();
  // Real time between passes; the first pass runs one interval after
  // Start().
  absl::Duration interval = absl::Minutes(10);
  // Counts what each pass deleted into joule_retention_deleted_total{kind}
  // (jobs, events); none when null. Borrowed.
  metrics::Registry* registry = nullptr;
};

// The leader's compaction pass by age (docs/ha.md#sizing): every interval,
// deletes finished jobs older than `finished_jobs` that billing no longer
// needs (ClusterManager::CompactFinishedJobs with Ledger::AttemptSettled),
// and events older than `events` (ClusterManager::CompactEvents), in
// bounded writes through the daemon's Store, so it works on RocksDB, memory
// and etcd alike. Cutoffs are `clock` time (a fake clock in tests).
// Owns its thread; borrows the manager and the ledger, which must outlive
// Stop(). Thread-safe: RunOnce() may be called from any thread (tests),
// but passes do not overlap (one at a time).
class Retention {
 public:
  struct Result {
    int64_t jobs = 0;
    int64_t events = 0;
  };
  Retention(ClusterManager* manager, const billing::Ledger* ledger,
            const Clock* clock, RetentionOptions options)
      : manager_(manager), ledger_(ledger), clock_(clock), options_(options) {}
  ~Retention() { Stop(); }

  // One pass now.
  absl::StatusOr<Result> RunOnce();
  // Starts / stops the periodic thread. Stop() is idempotent.
  void Start();
  void Stop();

 private:
  ClusterManager* const manager_;
  const billing::Ledger* const ledger_;
  const Clock* const clock_;
  const RetentionOptions options_;
  absl::Mutex pass_mu_;  // one pass at a time
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Adds `n` to joule_retention_deleted_total{kind} (no-op without a
// registry).
void CountDeleted(metrics::Registry* registry, const char* kind, int64_t n);

}  // namespace joule::daemon
