#include "daemon/ops_events.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/cluster_manager.h"

namespace joule::daemon {

log::Level EventLevel(const v1::Event& e) {
  const std::string& k = e.kind();
  if (k == "throttle" || k == "preempt" || k == "telemetry" || k == "gpu" ||
      k == "command") {
    return log::Level::kWarn;
  }
  if (k == "node" && (absl::StartsWith(e.message(), "unreachable") ||
                      absl::StrContains(e.message(), "refused"))) {
    return log::Level::kWarn;
  }
  if (k == "config" && absl::StrContains(e.message(), "refused")) {
    return log::Level::kWarn;
  }
  return log::Level::kInfo;
}

std::string EventCause(const v1::Event& e) {
  const std::string& m = e.message();
  if (e.kind() == "restore") return "restore";
  if (absl::StrContains(m, "contracted capacity")) return "contract";
  if (absl::StrContains(m, "cap")) return "cap";
  return "other";
}

std::string ClassLabel(v1::ServiceClass c) {
  switch (c) {
    case v1::SERVICE_CLASS_RESERVED:
      return "reserved";
    case v1::SERVICE_CLASS_ON_DEMAND:
      return "on-demand";
    case v1::SERVICE_CLASS_SPOT:
      return "spot";
    default:
      return "unspecified";
  }
}

OpsEvents::OpsEvents(metrics::Registry* registry) : registry_(registry) {}

OpsEvents::~OpsEvents() { Stop(); }

void OpsEvents::OnEvent(const v1::Event& e) {
  absl::MutexLock lock(&mu_);
  if (!stopping_) queue_.push_back(e);
}

void OpsEvents::OnTransition(const v1::Job& job, v1::JobState state) {
  if (state != v1::JOB_STATE_STARTING) return;
  Placement p;
  p.job = job.id();
  p.tenant = job.spec().tenant();
  p.service_class =
      ClassLabel(job.effective_class() != v1::SERVICE_CLASS_UNSPECIFIED
                     ? job.effective_class()
                     : job.spec().service_class());
  p.reason = job.reason();
  for (const v1::Allocation& a : job.allocations()) p.nodes.push_back(a.node());
  absl::MutexLock lock(&mu_);
  if (!stopping_) queue_.push_back(std::move(p));
}

void OpsEvents::Start(ClusterManager* manager) {
  manager_ = manager;
  thread_ = std::thread([this] { Run(); });
}

void OpsEvents::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void OpsEvents::Run() {
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](OpsEvents* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, drained
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    std::visit([this](const auto& x) { Handle(x); }, item);
  }
}

std::string OpsEvents::DomainOf(const std::string& node) {
  return manager_->NodeDomain(node);
}

void OpsEvents::Handle(const v1::Event& e) {
  std::string job, node, domain, service_class;
  const std::string& k = e.kind();
  if (k == "throttle" || k == "restore" || k == "preempt" || k == "job") {
    job = e.subject();
    auto j = manager_->GetJob(job, "");
    if (j.ok()) {
      service_class =
          ClassLabel(j->effective_class() != v1::SERVICE_CLASS_UNSPECIFIED
                         ? j->effective_class()
                         : j->spec().service_class());
      // The current attempt's nodes, or the last attempt's once it ended.
      auto allocs = j->allocations();
      if (allocs.empty() && j->attempts_size() > 0) {
        allocs = j->attempts(j->attempts_size() - 1).allocations();
      }
      std::vector<std::string> nodes;
      for (const v1::Allocation& a : allocs) nodes.push_back(a.node());
      node = absl::StrJoin(nodes, ",");
      if (!nodes.empty()) domain = DomainOf(nodes[0]);
    }
  } else if (k == "cap") {
    domain = e.subject();
  } else if (k == "node" || k == "telemetry" || k == "command" || k == "gpu") {
    node = e.subject().substr(0, e.subject().find('/'));
    domain = DomainOf(node);
  }
  if (k == "throttle" || k == "restore" || k == "preempt") {
    const char* family = k == "throttle"  ? "joule_throttles_total"
                         : k == "restore" ? "joule_restores_total"
                                          : "joule_preemptions_total";
    registry_
        ->GetCounter(
            family,
            absl::StrCat("Jobs ",
                         k == "throttle"  ? "throttled"
                         : k == "restore" ? "restored"
                                          : "preempted",
                         ", by class and cause."),
            {{"class", service_class.empty() ? "unspecified" : service_class},
             {"cause", EventCause(e)}})
        ->Inc();
  }
  log::Log(EventLevel(e), k,
           {{"job", job},
            {"node", node},
            {"domain", domain},
            {"class", service_class},
            {"subject",
             job.empty() && node.empty() && domain.empty() ? e.subject() : ""},
            {"seq", absl::StrCat(e.seq())},
            {"msg", e.message()}});
}

void OpsEvents::Handle(const Placement& p) {
  log::Log(log::Level::kInfo, "placement",
           {{"job", p.job},
            {"node", absl::StrJoin(p.nodes, ",")},
            {"domain", p.nodes.empty() ? "" : DomainOf(p.nodes[0])},
            {"tenant", p.tenant},
            {"class", p.service_class},
            {"msg", p.reason}});
}

void CountUsage(metrics::Registry* registry, const absl::Status& status,
                const v1::RecordUsageResponse& response, int events) {
  if (registry == nullptr) return;
  auto counter = [&](const char* result) {
    return registry->GetCounter(
        "joule_usage_events_total",
        "Usage events received: accepted (new), duplicate (same key and "
        "payload), rejected (the call failed).",
        {{"result", result}});
  };
  if (status.ok()) {
    counter("accepted")->Inc(response.accepted());
    counter("duplicate")->Inc(response.duplicates());
  } else {
    counter("rejected")->Inc(events);
    log::Log(log::Level::kWarn, "usage-refused",
             {{"events", absl::StrCat(events)},
              {"msg", std::string(status.message())}});
  }
}

void ObserveOps(const std::string& method, const absl::Status& status,
                metrics::Registry* registry) {
  if (method == "joule.v1.JobService/SubmitJob") {
    registry
        ->GetCounter("joule_job_submissions_total",
                     "Job submissions: accepted or rejected.",
                     {{"result", status.ok() ? "accepted" : "rejected"}})
        ->Inc();
    return;
  }
  if (!status.ok() && (method == "joule.v1.AgentService/Register" ||
                       method == "joule.v1.AgentService/Connect")) {
    log::Log(log::Level::kWarn, "registration-refused",
             {{"rpc", method},
              {"code", absl::StatusCodeToString(status.code())},
              {"msg", std::string(status.message())}});
  }
}

}  // namespace joule::daemon
