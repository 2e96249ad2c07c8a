// ClusterManager: the learned efficiency knees (daemon/knee_book.h), shown
// in a job and written to the store in bounded batches.
#include "absl/synchronization/mutex.h"
#include "daemon/cluster_manager.h"

namespace joule::daemon {

v1::EfficiencyKnee ClusterManager::EfficiencyKneeLocked(
    const v1::Job& job) const {
  // The workload key ScheduleOnce reads the knee by: the spec's model (an
  // efficiency job naming none runs at the config's knee).
  const v1::JobSpec& s = job.spec();
  return knees_.Describe(KneeBook::Key(s.tenant(), s.name(), s.gpu_model()),
                         options_.config.scheduler.efficiency_knee_permille);
}

size_t ClusterManager::FlushKneesOnce() {
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  const size_t n = knees_.Flush(options_.clock->Now(), &batch);
  if (n == 0) return 0;
  // Not synced: a crash loses at most the last minute of a workload's
  // samples, which the next reports learn again.
  if (absl::Status s =
          options_.store->Write(batch, storage::WriteOptions{.sync = false});
      !s.ok()) {
    return 0;
  }
  return n;
}

}  // namespace joule::daemon
