#pragma once

// `job submit --wait` on the WatchEvents stream: the daemon pushes the
// state changes of the submitted job (or of every job the caller may see,
// for an array), so the wait costs no polling. Used by main.cc's
// WaitForEnd, which falls back to polling GetJob/ListJobs when the stream
// cannot be used (an older jouled, the stream ended under us).

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/watch_commands.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {

// Subscribes to job state changes (of `job_id`, or with `job_id` empty of
// every job the caller may see), then calls `read` for the jobs waited on
// (the job, or an array's tasks; `read` exits on a failed call, as any
// joulectl call does) and follows the stream until each has been seen
// ending; then calls `read` once more and returns what it read, every job
// ended (SUCCEEDED, FAILED or CANCELLED). Returns nullopt if the stream
// could not be opened or ended before that: the caller polls instead.
std::optional<std::vector<v1::Job>> WaitOnStream(
    const WatchConnection& c, const std::string& job_id,
    const std::function<std::vector<v1::Job>()>& read);

}  // namespace joule::cli
