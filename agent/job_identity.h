#pragma once

// Who a job runs as on the node, and the environment it gets. Pure apart
// from the password database (getpwnam) and the agent's own euid.

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace joule::agent {

// The agent's rule for mapping tenants to Unix users.
struct JobUserPolicy {
  std::string default_user;                         // --job-user
  std::map<std::string, std::string> tenant_users;  // --tenant-user T=U
  bool allow_root = false;                          // --allow-root-jobs
};

// The Unix identity a job runs as. uid/gid -1: no switch (the agent is not
// root, so the job runs as the agent's own, unprivileged, user).
struct JobIdentity {
  int64_t uid = -1;
  int64_t gid = -1;
  std::string user;
  std::string home = "/";
};

// The tenant's user, else the default user; with neither, `nobody` when the
// agent is root (root only with allow_root), else the agent's own user.
// Errors: an unknown user, root without allow_root, or a user the agent
// (not being root) cannot switch to.
absl::StatusOr<JobIdentity> ResolveJobIdentity(const JobUserPolicy& policy,
                                               const std::string& tenant);

// Parses `TENANT=USER` entries (from repeated flags or the lines of a map
// file; `#` starts a comment). Errors name the entry.
absl::Status AddTenantUsers(const std::vector<std::string>& entries,
                            const std::string& source,
                            std::map<std::string, std::string>* out);

// The job's whole environment, built (never inherited from the agent):
// PATH, HOME, USER, LOGNAME, LANG, then the job's own variables (invalid or
// reserved names dropped), then `joule_vars`, which always win.
std::vector<std::string> BuildJobEnv(
    const JobIdentity& who,
    const std::vector<std::pair<std::string, std::string>>& job_vars,
    const std::vector<std::pair<std::string, std::string>>& joule_vars);

}  // namespace joule::agent
