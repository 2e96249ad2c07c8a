// ClusterManager::PreviewPowerCap: the power loop's decision for a proposed
// cap, without setting it (joulectl power set-cap --dry-run, and the --yes
// check for a cut far below the measured draw).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/validation.h"
#include "scheduler/measured_plus.h"
#include "scheduler/power_control.h"

namespace joule::daemon {

scheduler::PowerControlConfig ClusterManager::PowerLoopConfig() const {
  return options_.config.scheduler.admission ==
                 config::AdmissionMode::kMeasuredPlus
             ? scheduler::MeasuredPlusPower(options_.power,
                                            3 * options_.report_interval)
             : options_.power;
}

absl::StatusOr<v1::PowerCapPreview> ClusterManager::PreviewPowerCap(
    const v1::SetPowerCapRequest& r) {
  // The same checks as SetPowerCap, so that a preview fails as the call
  // itself would.
  RETURN_IF_ERROR(ValidateSetPowerCap(r));
  v1::PowerCapPreview out;
  scheduler::ClusterSnapshot snap;
  scheduler::PowerControlConfig power;
  {
    absl::MutexLock lock(&mu_);
    power = PowerLoopConfig();
    const int i = domains_.Find(r.domain());
    if (i < 0) {
      return absl::NotFoundError(
          absl::StrCat("domain: \"", r.domain(), "\" is not a power domain"));
    }
    // The snapshot the loop would take right after the cap is set.
    const int64_t old = domains_[i].cap_mw;
    domains_.SetCap(i, r.cap_mw());
    snap = SnapshotLocked();
    *out.mutable_domain() = domains_.View(i, DomainCommittedLocked()[i],
                                          DomainIdleFloorLocked()[i]);
    domains_.SetCap(i, old);
  }
  for (const scheduler::PowerAction& a : scheduler::ControlPower(snap, power)) {
    if (a.kind == scheduler::PowerAction::kRestore) continue;
    v1::PowerCapAction* x = out.add_actions();
    x->set_kind(a.kind == scheduler::PowerAction::kPreempt ? "preempt"
                                                           : "throttle");
    x->set_job_id(a.job_id);
    x->set_new_limit_mw(
        a.kind == scheduler::PowerAction::kThrottle ? a.new_limit_mw : 0);
    x->set_reason(a.reason);
  }
  absl::MutexLock lock(&mu_);
  for (v1::PowerCapAction& x : *out.mutable_actions()) {
    if (const JobRt* j = jobs_.Find(x.job_id()); j != nullptr) {
      x.set_tenant(j->job.spec().tenant());
    }
  }
  return out;
}

}  // namespace joule::daemon
