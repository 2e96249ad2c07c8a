#include "daemon/preempt_notice.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"

namespace joule::daemon {

absl::Status CheckPreemptGrace(const v1::JobSpec& spec,
                               absl::Duration max_preempt_grace) {
  if (!spec.has_preempt_grace()) return absl::OkStatus();
  const absl::Duration grace = FromProtoDuration(spec.preempt_grace());
  if (grace > max_preempt_grace) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.preempt_grace: ", absl::FormatDuration(grace),
                     " is more than this cluster's max_preempt_grace ",
                     absl::FormatDuration(max_preempt_grace)));
  }
  return absl::OkStatus();
}

StopNotice NoticeFor(const v1::JobSpec& spec, v1::JobState target,
                     absl::Duration stop_grace,
                     absl::Duration max_preempt_grace) {
  StopNotice n;
  n.grace = stop_grace;
  if (target != v1::JOB_STATE_PREEMPTED) return n;
  if (!spec.preempt_signal().empty()) n.signal = spec.preempt_signal();
  if (spec.has_preempt_grace()) {
    n.grace =
        std::max(absl::ZeroDuration(), FromProtoDuration(spec.preempt_grace()));
  }
  if (n.grace > max_preempt_grace) {
    // Only a job that asked for it is cut; the operator's stop_grace for
    // jobs without a notice stays what it is.
    if (spec.has_preempt_grace()) {
      n.grace = max_preempt_grace;
      n.cut = true;
    }
  }
  return n;
}

std::string NoticeText(const StopNotice& notice) {
  return absl::StrCat(notice.signal, ", SIGKILL after ",
                      notice.grace == absl::ZeroDuration()
                          ? std::string("0s")
                          : absl::FormatDuration(notice.grace),
                      notice.cut ? " (cut to max_preempt_grace)" : "");
}

}  // namespace joule::daemon
