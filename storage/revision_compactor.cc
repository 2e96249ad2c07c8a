#include "storage/revision_compactor.h"

#include "absl/strings/match.h"

namespace joule::storage {

absl::StatusOr<int64_t> RevisionCompactor::Step() {
  auto status = client_->Status();
  if (!status.ok()) return status.status();
  const int64_t now = status->header().revision();
  const int64_t target = seen_;
  seen_ = now;
  if (target <= compacted_) return 0;
  absl::Status s = client_->Compact(target);
  // Someone (etcd's auto-compaction, another tool) compacted further
  // already: nothing to do.
  if (!s.ok() && !absl::StrContains(s.message(), "compacted")) return s;
  compacted_ = target;
  return s.ok() ? target : 0;
}

}  // namespace joule::storage
