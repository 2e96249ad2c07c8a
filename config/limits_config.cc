#include "config/limits_config.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/units.h"

namespace joule::config {

std::optional<scheduler::ServiceClass> ParseClassName(const std::string& s) {
  if (s == "reserved") return scheduler::ServiceClass::kReserved;
  if (s == "on-demand") return scheduler::ServiceClass::kOnDemand;
  if (s == "spot") return scheduler::ServiceClass::kSpot;
  return std::nullopt;
}

std::optional<FieldError> ApplyTimeLimits(const v1::config::Scheduler& s,
                                          scheduler::TimeLimits* limits) {
  for (int i = 0; i < s.time_limit_size(); ++i) {
    const v1::config::TimeLimit& t = s.time_limit(i);
    const std::string at = absl::StrCat("time_limit[", i, "].");
    const auto cls = ParseClassName(t.service_class());
    if (!cls) {
      return FieldError{at + "service_class",
                        absl::StrCat("\"", t.service_class(),
                                     "\" is not one of: reserved, "
                                     "on-demand, spot")};
    }
    scheduler::ClassTimeLimit& out = limits->For(*cls);
    for (const auto& [field, text, dst] :
         {std::tuple{"default_max_runtime", &t.default_max_runtime(),
                     &out.default_max_runtime},
          std::tuple{"max_runtime_limit", &t.max_runtime_limit(),
                     &out.max_runtime_limit}}) {
      if (text->empty()) continue;
      auto d = ParseNonNegativeDuration(*text, "");  // named by at + field
      if (!d.ok()) {
        return FieldError{at + field, std::string(d.status().message())};
      }
      if (*d <= absl::ZeroDuration()) {
        return FieldError{at + field, "must be positive (e.g. \"24h\")"};
      }
      *dst = *d;
    }
    if (out.default_max_runtime > out.max_runtime_limit) {
      return FieldError{
          at + "default_max_runtime",
          absl::StrCat(scheduler::FormatLimit(out.default_max_runtime),
                       " is above max_runtime_limit ",
                       scheduler::FormatLimit(out.max_runtime_limit))};
    }
  }
  return std::nullopt;
}

std::optional<FieldError> ParseQuota(const v1::config::Quota& q,
                                     scheduler::TenantQuota* out) {
  *out = scheduler::TenantQuota{};
  for (int i = 0; i < q.max_running_gpus_size(); ++i) {
    const auto cls = ParseClassName(q.max_running_gpus(i).service_class());
    if (!cls) {
      return FieldError{
          absl::StrCat("quota.max_running_gpus[", i, "].service_class"),
          absl::StrCat("\"", q.max_running_gpus(i).service_class(),
                       "\" is not one of: reserved, on-demand, spot")};
    }
    out->max_running_gpus[static_cast<int>(*cls)] =
        q.max_running_gpus(i).gpus();
  }
  if (q.has_max_pending_jobs()) out->max_pending_jobs = q.max_pending_jobs();
  return std::nullopt;
}

}  // namespace joule::config
