#include "scheduler/quota.h"

#include "absl/strings/str_cat.h"

namespace joule::scheduler {

absl::Status CheckPendingQuota(const std::string& tenant, int64_t pending_now,
                               const TenantQuota& quota) {
  if (quota.max_pending_jobs == kNoLimit ||
      pending_now < quota.max_pending_jobs) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "tenant ", tenant, " already has ", pending_now,
      " pending jobs (quota max_pending_jobs ", quota.max_pending_jobs,
      "); wait until some start, or an operator raises it with joulectl "
      "tenant set-quota"));
}

std::string QuotaText(const TenantQuota& quota) {
  auto one = [](int64_t v) {
    return v == kNoLimit ? std::string("unlimited") : absl::StrCat(v);
  };
  return absl::StrCat("running GPUs: reserved ", one(quota.max_running_gpus[0]),
                      ", on-demand ", one(quota.max_running_gpus[1]), ", spot ",
                      one(quota.max_running_gpus[2]), "; pending jobs ",
                      one(quota.max_pending_jobs));
}

QuotaLedger::QuotaLedger(const ClusterSnapshot& snapshot)
    : snapshot_(snapshot) {}

void QuotaLedger::CountRunning() const {
  if (counted_) return;
  counted_ = true;
  for (const RunningJob& r : snapshot_.running) {
    int64_t gpus = 0;
    for (const JobShare& s : r.shares) gpus += s.gpus.size();
    running_[{r.tenant, static_cast<int>(r.cls)}] += gpus;
  }
}

std::string QuotaLedger::Check(const std::string& tenant, ServiceClass cls,
                               int64_t gpus) const {
  auto t = snapshot_.tenants.find(tenant);
  if (t == snapshot_.tenants.end()) return "";
  const int64_t max = t->second.quota.max_running_gpus[static_cast<int>(cls)];
  if (max == kNoLimit) return "";
  CountRunning();
  auto it = running_.find({tenant, static_cast<int>(cls)});
  const int64_t now = it == running_.end() ? 0 : it->second;
  if (now + gpus <= max) return "";
  return absl::StrCat("over quota: tenant ", tenant, " runs ", now, " ",
                      ServiceClassName(cls), " GPUs + ", gpus,
                      " needed > max_running_gpus ", max);
}

void QuotaLedger::Add(const std::string& tenant, ServiceClass cls,
                      int64_t gpus) {
  running_[{tenant, static_cast<int>(cls)}] += gpus;
}

}  // namespace joule::scheduler
