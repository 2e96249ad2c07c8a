#pragma once

// Job arrays (docs/api.md#job-arrays): one SubmitJob with `array` set makes
// tasks first..last of one spec, all written in one durable WriteBatch. A
// task is an ordinary job whose id is "<array id>_<index>" (the array id is
// "job-NNNNNN", the sequence number of its first task); the agent gives it
// JOULE_ARRAY_ID and JOULE_ARRAY_INDEX. The pure parts live here; the
// ClusterManager methods that use them (SubmitArray, CancelArray, IsArray)
// are defined in job_arrays.cc.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

// The most tasks one array may have (Slurm's MaxArraySize is 1001 by
// default); a store that limits ops per batch (etcd) lowers it.
inline constexpr uint32_t kMaxArrayTasks = 100000;

// INVALID_ARGUMENT unless first <= last, the array has at most
// kMaxArrayTasks tasks, and, when max_batch_ops > 0, the tasks plus the
// counters and idempotency records fit one batch of that many ops.
absl::Status ValidateArray(const v1::JobArray& array, int64_t max_batch_ops);

// "<array_id>_<index>".
std::string ArrayTaskId(absl::string_view array_id, uint32_t index);

// Which pending tasks of arrays with a max_running limit a scheduling round
// may offer to the policy: per array, the lowest-indexed pending tasks, as
// many as the limit leaves once the array's starting/running tasks are
// counted. Jobs that are not tasks of a limited array are always admitted.
//
// Owned by the ClusterManager (guarded by its mu_). While no active task
// has a limit the gate is disarmed and a round costs nothing; Arm() (a new
// limited array) or construction (the state loaded from the store may hold
// some) arms it, and a round that finds no limited task disarms it.
class ArrayGate {
 public:
  void Arm() { armed_ = true; }
  // Starts a round over the active jobs: `job_of(id)` returns the job.
  template <typename JobOf>
  void BeginRound(const absl::flat_hash_set<std::string>& active,
                  JobOf job_of) {
    arrays_.clear();
    admitted_.clear();
    if (!armed_) return;
    for (const std::string& id : active) Count(job_of(id));
    Finish();
  }
  // True if the pending `job` may be offered this round.
  bool Admits(const v1::Job& job) const {
    if (job.array_max_running() == 0) return true;
    return admitted_.contains(job.id());
  }

 private:
  struct Array {
    uint32_t max_running = 0;
    uint32_t holding = 0;  // starting or running tasks
    std::vector<std::pair<uint32_t, std::string>> pending;  // index, id
  };
  void Count(const v1::Job& job);
  void Finish();

  bool armed_ = true;
  absl::flat_hash_map<std::string, Array> arrays_;
  absl::flat_hash_set<std::string> admitted_;
};

}  // namespace joule::daemon
