#include "scheduler/time_limits.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace joule::scheduler {

const ClassTimeLimit& TimeLimits::For(ServiceClass cls) const {
  switch (cls) {
    case ServiceClass::kReserved:
      return reserved;
    case ServiceClass::kSpot:
      return spot;
    case ServiceClass::kOnDemand:
      break;
  }
  return on_demand;
}

ClassTimeLimit& TimeLimits::For(ServiceClass cls) {
  return const_cast<ClassTimeLimit&>(std::as_const(*this).For(cls));
}

std::string FormatLimit(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

absl::StatusOr<absl::Duration> ResolveMaxRuntime(ServiceClass cls,
                                                 absl::Duration requested,
                                                 const TimeLimits& limits) {
  if (requested < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("spec.max_runtime: must not be negative");
  }
  const ClassTimeLimit& l = limits.For(cls);
  if (requested == absl::ZeroDuration()) return l.default_max_runtime;
  if (requested > l.max_runtime_limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.max_runtime: ", FormatLimit(requested), " is above the ",
        ServiceClassName(cls), " limit ", FormatLimit(l.max_runtime_limit),
        " (scheduler.time_limit max_runtime_limit)"));
  }
  return requested;
}

absl::Duration EffectiveMaxRuntime(ServiceClass cls, absl::Duration requested,
                                   const TimeLimits& limits) {
  if (requested > absl::ZeroDuration()) return requested;
  return limits.For(cls).default_max_runtime;
}

}  // namespace joule::scheduler
