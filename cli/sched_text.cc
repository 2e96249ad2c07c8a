#include "cli/sched_text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/format.h"
#include "common/preempt_signal.h"
#include "common/proto_time.h"
#include "common/units.h"

namespace joule::cli {

absl::StatusOr<v1::TenantQuota> ParseQuotaFlags(
    const std::vector<std::string>& max_gpus, int64_t max_pending) {
  v1::TenantQuota q;
  for (const std::string& entry : max_gpus) {
    std::vector<std::string> kv = absl::StrSplit(entry, '=');
    uint32_t gpus = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &gpus)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--max-gpus: \"", entry, "\" is not CLASS=GPUS (e.g. on-demand=16)"));
    }
    auto cls = ParseServiceClass(kv[0]);
    if (!cls.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max-gpus: \"", kv[0],
                       "\" is not one of reserved, on-demand, spot"));
    }
    switch (*cls) {
      case v1::SERVICE_CLASS_RESERVED:
        q.set_max_running_gpus_reserved(gpus);
        break;
      case v1::SERVICE_CLASS_SPOT:
        q.set_max_running_gpus_spot(gpus);
        break;
      default:
        q.set_max_running_gpus_on_demand(gpus);
    }
  }
  if (max_pending >= 0) {
    if (max_pending > UINT32_MAX) {
      return absl::InvalidArgumentError("--max-pending: too large");
    }
    q.set_max_pending_jobs(static_cast<uint32_t>(max_pending));
  }
  return q;
}

std::string QuotaText(const v1::TenantQuota& q) {
  std::vector<std::string> gpus;
  if (q.has_max_running_gpus_reserved()) {
    gpus.push_back(absl::StrCat("reserved ", q.max_running_gpus_reserved()));
  }
  if (q.has_max_running_gpus_on_demand()) {
    gpus.push_back(absl::StrCat("on-demand ", q.max_running_gpus_on_demand()));
  }
  if (q.has_max_running_gpus_spot()) {
    gpus.push_back(absl::StrCat("spot ", q.max_running_gpus_spot()));
  }
  std::string out = absl::StrJoin(gpus, ", ");
  if (q.has_max_pending_jobs()) {
    absl::StrAppend(&out, out.empty() ? "" : "; ", "pending ",
                    q.max_pending_jobs());
  }
  return out.empty() ? "none" : out;
}

absl::StatusOr<std::vector<std::string>> ParseAfter(const std::string& flag) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(flag, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    for (char c : part) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') {
        return absl::InvalidArgumentError(absl::StrCat(
            "--after: \"", part, "\" is not a job id (e.g. job-000012)"));
      }
    }
    out.emplace_back(part);
  }
  return out;
}

std::string TimeLimitText(const v1::Job& j) {
  const absl::Duration limit = FromProtoDuration(j.time_limit());
  if (limit <= absl::ZeroDuration()) return "none";
  std::string out = absl::FormatDuration(limit);
  if (FromProtoDuration(j.spec().max_runtime()) <= absl::ZeroDuration()) {
    absl::StrAppend(&out, " (", ServiceClassName(j.spec().service_class()),
                    " default)");
  }
  return out;
}

std::string ContractText(const v1::Job& j) {
  if (j.spec().service_class() != v1::SERVICE_CLASS_RESERVED ||
      j.effective_class() == v1::SERVICE_CLASS_RESERVED ||
      j.effective_class() == v1::SERVICE_CLASS_UNSPECIFIED) {
    return "";
  }
  v1::ServiceClass billed = v1::SERVICE_CLASS_RESERVED;
  if (!j.attempts().empty()) billed = j.attempts().rbegin()->billed_class();
  std::string out =
      absl::StrCat("beyond the tenant's contracted reserved GPUs: runs as ",
                   ServiceClassName(j.effective_class()),
                   "; its GPUs are billed as ", ServiceClassName(billed));
  if (billed == v1::SERVICE_CLASS_RESERVED) out += " overage";
  return out;
}

absl::Status ApplyPreemptFlags(const std::string& signal,
                               const std::string& grace, v1::JobSpec* spec) {
  if (!signal.empty()) {
    std::optional<std::string> canonical = CanonicalPreemptSignal(signal);
    if (!canonical.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--preempt-signal: \"", signal, "\" is not one of ",
                       PreemptSignalList()));
    }
    spec->set_preempt_signal(*canonical);
  }
  if (!grace.empty()) {
    auto d = ParseNonNegativeDuration(grace, "--preempt-grace");
    if (!d.ok()) return d.status();
    if (*d > absl::Hours(24)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--preempt-grace: ", grace, " is more than 24h"));
    }
    *spec->mutable_preempt_grace() = ToProtoDuration(*d);
  }
  return absl::OkStatus();
}

std::string PreemptText(const v1::JobSpec& spec) {
  return absl::StrCat(
      spec.preempt_signal().empty() ? "SIGTERM" : spec.preempt_signal(),
      ", SIGKILL after ",
      !spec.has_preempt_grace() ? std::string("the stop grace")
      : FromProtoDuration(spec.preempt_grace()) == absl::ZeroDuration()
          ? std::string("0s")
          : absl::FormatDuration(FromProtoDuration(spec.preempt_grace())));
}

}  // namespace joule::cli
