#pragma once

// The files a job supervisor and the agent share in the agent's state dir,
// one set per job attempt (`<state_dir>/<job>.<attempt>.*`):
//   .job   written by an older agent before the launch (still read, no
//          longer written): the attempt's GPUs and the GPU energy counter
//          at its start; these facts are in the .run record now.
//   .run   written by the supervisor once the job's first process exists
//          and before it may run: supervisor pid, job pgid, cgroups, start,
//          the agent's facts (GPUs, energy at start, boot id). Not synced:
//          it only has to outlive the agent process (the page cache does),
//          and a machine that goes down takes every process of the job
//          with it; JobRunner treats a .run of an earlier boot as the
//          node's loss, whether it reached the disk or not.
//   .exit  written and synced by the supervisor after the job's whole
//          process group (and cgroup) is gone: exit code, signal, start and
//          end time; it must survive the machine (the agent may not have
//          reported the end yet).
// Every file is written to a temp name and renamed, so a reader sees a whole
// record or none. The format is `key=value` lines; unknown keys are ignored.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule::agent {

// True if `id` is a job id the daemon hands out ("job-" and 1..19 digits;
// a task of a job array adds "_" and its index, 1..10 digits). Checked
// before any path is built from an id.
bool ValidJobId(absl::string_view id);
// True if `id` is an array task's: sets the array's id and the task's index
// (JOULE_ARRAY_ID, JOULE_ARRAY_INDEX in the job's environment).
bool ArrayTaskOf(absl::string_view id, std::string* array_id,
                 std::string* index);

// `<dir>/<job>.<attempt><suffix>`; the id must be valid (checked by callers).
std::string AttemptPath(const std::string& dir, const std::string& job_id,
                        uint32_t attempt, absl::string_view suffix);

using Record = std::map<std::string, std::string>;

// Whether WriteRecord waits for the record to reach the disk (fsync before
// the rename) or only for the page cache (seen by every process, lost with
// the machine).
enum class Durability { kSynced, kProcessCrashOnly };

// Writes `rec` atomically (temp file + rename), mode 0600.
absl::Status WriteRecord(const std::string& path, const Record& rec,
                         Durability durability = Durability::kSynced);
// NOT_FOUND if the file does not exist.
absl::StatusOr<Record> ReadRecord(const std::string& path);
int64_t RecordInt(const Record& rec, const std::string& key, int64_t dflt = 0);

// Creates `dir` (and missing parents) with mode 0700; refuses a symlink.
absl::Status MakePrivateDir(const std::string& dir);

// Whether `pid` is alive and is a joule-job-supervisor (a guard against pid
// reuse after an agent restart).
bool IsSupervisor(pid_t pid);

}  // namespace joule::agent
