#include "agent/job_identity.h"

#include <pwd.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/job_env.h"

namespace joule::agent {

absl::StatusOr<JobIdentity> ResolveJobIdentity(const JobUserPolicy& policy,
                                               const std::string& tenant) {
  const bool root_agent = ::geteuid() == 0;
  std::string user = policy.default_user;
  auto it = policy.tenant_users.find(tenant);
  if (it != policy.tenant_users.end()) user = it->second;
  if (user.empty() && root_agent) user = policy.allow_root ? "root" : "nobody";
  struct passwd pw_storage, *pw = nullptr;
  char buf[4096];
  if (user.empty()) {
    getpwuid_r(::geteuid(), &pw_storage, buf, sizeof(buf), &pw);
  } else {
    getpwnam_r(user.c_str(), &pw_storage, buf, sizeof(buf), &pw);
  }
  if (pw == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("job user \"", user, "\" (tenant ", tenant,
                     ") does not exist on this node"));
  }
  if (pw->pw_uid == 0 && !policy.allow_root) {
    return absl::PermissionDeniedError(
        absl::StrCat("refusing to run a job of tenant ", tenant,
                     " as root (start the agent with --allow-root-jobs)"));
  }
  JobIdentity who;
  who.user = pw->pw_name;
  who.home = pw->pw_dir != nullptr && pw->pw_dir[0] != '\0' ? pw->pw_dir : "/";
  if (root_agent) {
    who.uid = pw->pw_uid;
    who.gid = pw->pw_gid;
  } else if (pw->pw_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the agent runs as uid ", ::geteuid(),
                     " and cannot run jobs as user ", who.user));
  }
  return who;
}

absl::Status AddTenantUsers(const std::vector<std::string>& entries,
                            const std::string& source,
                            std::map<std::string, std::string>* out) {
  int line = 0;
  for (const std::string& raw : entries) {
    ++line;
    absl::string_view e = raw;
    e = e.substr(0, e.find('#'));
    e = absl::StripAsciiWhitespace(e);
    if (e.empty()) continue;
    std::pair<std::string, std::string> kv =
        absl::StrSplit(e, absl::MaxSplits('=', 1));
    kv.first = std::string(absl::StripAsciiWhitespace(kv.first));
    kv.second = std::string(absl::StripAsciiWhitespace(kv.second));
    if (kv.first.empty() || kv.second.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line, ": want TENANT=USER, got \"", e, "\""));
    }
    (*out)[kv.first] = kv.second;
  }
  return absl::OkStatus();
}

std::vector<std::string> BuildJobEnv(
    const JobIdentity& who,
    const std::vector<std::pair<std::string, std::string>>& job_vars,
    const std::vector<std::pair<std::string, std::string>>& joule_vars) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"HOME", who.home},
      {"USER", who.user},
      {"LOGNAME", who.user},
      {"LANG", "C.UTF-8"},
  };
  auto set = [&env](const std::string& k, const std::string& v) {
    for (auto& [ek, ev] : env) {
      if (ek == k) {
        ev = v;
        return;
      }
    }
    env.emplace_back(k, v);
  };
  for (const auto& [k, v] : job_vars) {
    if (!ValidEnvName(k) || ReservedEnvName(k) ||
        v.find('\0') != std::string::npos) {
      continue;
    }
    set(k, v);
  }
  for (const auto& [k, v] : joule_vars) set(k, v);
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(absl::StrCat(k, "=", v));
  return out;
}

}  // namespace joule::agent
