#include "daemon/retention.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "billing/ledger.h"
#include "daemon/cluster_manager.h"
#include "metrics/registry.h"

namespace joule::daemon {

void CountDeleted(metrics::Registry* registry, const char* kind, int64_t n) {
  if (registry == nullptr) return;
  registry
      ->GetCounter("joule_retention_deleted_total",
                   "Records deleted by age: finished jobs and events "
                   "(retention), usage records past the dedup window.",
                   {{"kind", kind}})
      ->Inc(static_cast<uint64_t>(n));
}

absl::StatusOr<Retention::Result> Retention::RunOnce() {
  absl::MutexLock pass(&pass_mu_);
  Result r;
  const absl::Time now = clock_->Now();
  if (options_.finished_jobs > absl::ZeroDuration()) {
    const billing::Ledger* ledger = ledger_;
    auto n = manager_->CompactFinishedJobs(
        now - options_.finished_jobs,
        [ledger](const std::string& job, uint32_t attempt) {
          return ledger != nullptr && ledger->AttemptSettled(job, attempt);
        });
    if (!n.ok()) return n.status();
    r.jobs = *n;
  }
  if (options_.events > absl::ZeroDuration()) {
    auto n = manager_->CompactEvents(now - options_.events);
    if (!n.ok()) return n.status();
    r.events = *n;
  }
  CountDeleted(options_.registry, "jobs", r.jobs);
  CountDeleted(options_.registry, "events", r.events);
  return r;
}

void Retention::Start() {
  // The family is there from the start (zero until a pass deletes).
  CountDeleted(options_.registry, "jobs", 0);
  CountDeleted(options_.registry, "events", 0);
  if (options_.finished_jobs <= absl::ZeroDuration() &&
      options_.events <= absl::ZeroDuration()) {
    return;  // keep everything: no thread
  }
  thread_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) {
          return;
        }
      }
      auto r = RunOnce();
      if (!r.ok()) {
        fprintf(stderr, "jouled: retention pass failed (retried in %s): %s\n",
                absl::FormatDuration(options_.interval).c_str(),
                std::string(r.status().message()).c_str());
      } else if (r->jobs > 0 || r->events > 0) {
        fprintf(stderr,
                "jouled: retention deleted %lld finished jobs older than %s "
                "and %lld events older than %s\n",
                static_cast<long long>(r->jobs),
                absl::FormatDuration(options_.finished_jobs).c_str(),
                static_cast<long long>(r->events),
                absl::FormatDuration(options_.events).c_str());
      }
    }
  });
}

void Retention::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace joule::daemon
