#pragma once

#include <deque>
#include <string>
#include <thread>
#include <variant>

#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "joule/v1/joule.pb.h"
#include "metrics/registry.h"

namespace joule::daemon {

class ClusterManager;

// How the operator log and the counters see one recorded event: its level,
// and for throttle/restore/preempt the cause label (bounded: "cap",
// "contract", "restore", "other"). Pure.
log::Level EventLevel(const v1::Event& e);
std::string EventCause(const v1::Event& e);
// "reserved", "on-demand", "spot", "unspecified".
std::string ClassLabel(v1::ServiceClass c);

// The operator's view of the manager's decisions: every recorded event and
// every placement becomes one log line (common/log.h) naming its job, node
// and domain, and throttles, restores and preemptions are counted by class
// and cause (joule_throttles_total, joule_restores_total,
// joule_preemptions_total). The manager's hooks only queue (they run under
// its lock); a thread of this class resolves job -> nodes -> domain through
// the manager's public reads and writes the line. Owns the queue and the
// thread. Thread-safe.
class OpsEvents {
 public:
  explicit OpsEvents(metrics::Registry* registry);
  ~OpsEvents();
  OpsEvents(const OpsEvents&) = delete;
  OpsEvents& operator=(const OpsEvents&) = delete;

  // Hooks for ClusterManagerOptions (on_event_recorded, on_transition):
  // they copy what they need and return.
  void OnEvent(const v1::Event& e);
  void OnTransition(const v1::Job& job, v1::JobState state);

  // Starts resolving and logging; `manager` must outlive Stop().
  void Start(ClusterManager* manager);
  // Drains what is queued, then stops the thread. Idempotent.
  void Stop();

 private:
  struct Placement {
    std::string job, tenant, service_class, reason;
    std::vector<std::string> nodes;
  };
  using Item = std::variant<v1::Event, Placement>;
  void Run();
  void Handle(const v1::Event& e);
  void Handle(const Placement& p);
  std::string DomainOf(const std::string& node);

  metrics::Registry* const registry_;
  ClusterManager* manager_ = nullptr;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Counts a RecordUsage call into joule_usage_events_total{result}:
// accepted and duplicate from its response, rejected (all events of the
// call) when it failed.
void CountUsage(metrics::Registry* registry, const absl::Status& status,
                const v1::RecordUsageResponse& response, int events);

// After every gRPC call (Gate::Observe; `method` without its leading
// slash): counts SubmitJob into joule_job_submissions_total{result} and logs
// refused agent registrations and streams.
void ObserveOps(const std::string& method, const absl::Status& status,
                metrics::Registry* registry);

}  // namespace joule::daemon
