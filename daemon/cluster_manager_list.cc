// ClusterManager::ListJobsPage: ListJobs for one reply page (JobService's
// ListJobs), without copying every stored job per page.
#include <algorithm>

#include "absl/status/status.h"
#include "daemon/cluster_manager.h"
#include "daemon/paging.h"

namespace joule::daemon {

absl::StatusOr<std::vector<v1::Job>> ClusterManager::ListJobsPage(
    const v1::ListJobsRequest& req, const std::string& caller_tenant) {
  // The newest N need the whole list; bad tokens and sizes are Paginate's.
  if (req.limit() > 0 || req.page_token().size() > 128 ||
      req.page_size() > kMaxPageSize) {
    return ListJobs(req, caller_tenant);
  }
  if (!caller_tenant.empty() && !req.tenant().empty() &&
      req.tenant() != caller_tenant) {
    return absl::PermissionDeniedError(
        "tenant: a tenant may list only its own jobs");
  }
  const std::string tenant =
      caller_tenant.empty() ? req.tenant() : caller_tenant;
  const std::string& after = req.page_token();
  auto keep = [&](const std::string& id, const v1::Job& job) {
    return (after.empty() || id > after) &&
           (tenant.empty() || job.spec().tenant() == tenant) &&
           (req.state() == v1::JOB_STATE_UNSPECIFIED ||
            job.state() == req.state()) &&
           (req.array_id().empty() || job.array_id() == req.array_id());
  };
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  if (req.state() != v1::JOB_STATE_UNSPECIFIED && IsActive(req.state())) {
    // Pending, starting, running: the active set is small next to all
    // jobs. Paginate keeps the page of these, sorted by id. Starting and
    // running ones come from the placed set, not past a long queue.
    const auto& ids =
        req.state() == v1::JOB_STATE_PENDING ? jobs_.active() : jobs_.placed();
    for (const std::string& id : ids) {
      const v1::Job& job = jobs_.at(id).job;
      if (keep(id, job)) out.push_back(job);
    }
    std::sort(out.begin(), out.end(), [](const v1::Job& a, const v1::Job& b) {
      return a.id() < b.id();
    });
    return out;
  }
  // In id order from the token on, until one job past what one page holds
  // (Paginate: page_size jobs and kMaxPageBytes, at least one job).
  size_t bytes = 0;
  for (auto it = after.empty() ? jobs_.begin() : jobs_.lower_bound(after);
       it != jobs_.end(); ++it) {
    if (!keep(it->first, it->second.job)) continue;
    out.push_back(it->second.job);
    bytes += out.back().ByteSizeLong() + 8;
    if ((req.page_size() > 0 && out.size() > req.page_size()) ||
        (out.size() > 1 && bytes > kMaxPageBytes)) {
      break;  // this job starts the next page
    }
  }
  return out;
}

}  // namespace joule::daemon
