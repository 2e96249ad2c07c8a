#include "daemon/event_log.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::daemon {
namespace {

std::string EventKey(uint64_t seq) { return absl::StrFormat("%016x", seq); }

}  // namespace

v1::Event EventLog::Add(storage::WriteBatch* batch, std::string kind,
                        std::string subject, std::string message) {
  v1::Event e;
  e.set_seq(next_seq_++);
  *e.mutable_time() = ToProtoTime(clock_->Now());
  e.set_kind(std::move(kind));
  e.set_subject(std::move(subject));
  e.set_message(std::move(message));
  batch->Put(storage::kEvents, EventKey(e.seq()), e.SerializeAsString());
  if (on_event_) on_event_(e);
  return e;
}

void EventLog::WriteUnsynced(const storage::WriteBatch& batch) {
  // Informational events on the report path: not synced, so that a burst of
  // reports (10,000 nodes coming back) does not wait on the disk. They still
  // survive a crash of jouled; a power loss may drop the latest.
  store_->Write(batch, storage::WriteOptions{.sync = false}).IgnoreError();
}

absl::Status EventLog::Load(uint64_t from_counters) {
  next_seq_ = std::max<uint64_t>(1, from_counters);
  return store_->Scan(storage::kEvents, "", [&](auto key, auto value) {
    v1::Event e;
    if (e.ParseFromString(std::string(value))) {
      next_seq_ = std::max(next_seq_, e.seq() + 1);
    }
    return true;
  });
}

absl::StatusOr<std::vector<v1::Event>> EventLog::List(
    const v1::ListEventsRequest& r,
    const absl::flat_hash_set<std::string>* only_subjects) const {
  const absl::Time now = clock_->Now();
  const absl::Duration since = FromProtoDuration(r.since());
  if (since < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("since: must not be negative");
  }
  std::vector<v1::Event> out;
  RETURN_IF_ERROR(store_->Scan(storage::kEvents, "", [&](auto key, auto value) {
    v1::Event e;
    if (!e.ParseFromString(std::string(value))) return true;
    if (since > absl::ZeroDuration() && FromProtoTime(e.time()) < now - since) {
      return true;
    }
    if (!r.kind().empty() && e.kind() != r.kind()) return true;
    if (only_subjects != nullptr && !only_subjects->contains(e.subject())) {
      return true;
    }
    out.push_back(std::move(e));
    return true;
  }));
  if (r.limit() > 0 && out.size() > r.limit()) {
    out.erase(out.begin(), out.end() - r.limit());
  }
  return out;
}

absl::StatusOr<int64_t> EventLog::Compact(absl::Time cutoff,
                                          int64_t max_batch_ops) const {
  const size_t per_batch =
      max_batch_ops > 0 ? static_cast<size_t>(max_batch_ops) : 1000;
  std::vector<std::string> old;
  RETURN_IF_ERROR(store_->Scan(storage::kEvents, "", [&](auto key, auto value) {
    v1::Event e;
    if (!e.ParseFromString(std::string(value))) return true;  // keep it
    if (FromProtoTime(e.time()) >= cutoff) return false;
    old.emplace_back(key);
    return true;
  }));
  int64_t deleted = 0;
  for (size_t i = 0; i < old.size(); i += per_batch) {
    storage::WriteBatch b;
    for (size_t j = i; j < old.size() && j < i + per_batch; ++j) {
      b.Delete(storage::kEvents, old[j]);
    }
    RETURN_IF_ERROR(store_->Write(b, {.sync = true}));
    deleted += static_cast<int64_t>(b.size());
  }
  return deleted;
}

}  // namespace joule::daemon
