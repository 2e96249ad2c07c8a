#include "auth/audit.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "auth/tokens.h"
#include "common/proto_time.h"

namespace joule::auth {
namespace {

thread_local AuditScope* current_scope = nullptr;

}  // namespace

std::string OutcomeText(const absl::Status& status) {
  if (status.ok()) return "ok";
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                      status.message());
}

AuditLog::AuditLog(storage::Store* store, const Clock* clock,
                   std::string boot_id)
    : store_(store),
      clock_(clock),
      boot_id_(boot_id.empty() ? absl::BytesToHexString(SecureRandomBytes()(4))
                               : std::move(boot_id)) {}

void AuditLog::AddTo(v1::AuditRecord rec, storage::WriteBatch* batch) {
  const absl::Time now = clock_->Now();
  *rec.mutable_time() = ToProtoTime(now);
  const std::string key =
      absl::StrFormat("%020d.%s.%012d", absl::ToUnixMicros(now), boot_id_,
                      counter_.fetch_add(1) + 1);
  batch->Put(storage::kAudit, key, rec.SerializeAsString());
}

absl::Status AuditLog::Write(v1::AuditRecord rec) {
  storage::WriteBatch batch;
  AddTo(std::move(rec), &batch);
  return store_->Write(batch, {.sync = true});
}

absl::StatusOr<std::vector<v1::AuditRecord>> AuditLog::List(
    const v1::ListAuditRequest& req) const {
  const absl::Duration since = FromProtoDuration(req.since());
  if (since < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("since: must not be negative");
  }
  if (req.principal().size() > 256) {
    return absl::InvalidArgumentError("principal: at most 256 bytes");
  }
  if (req.limit() > 100000) {
    return absl::InvalidArgumentError("limit: at most 100000");
  }
  const size_t limit = req.limit() == 0 ? 1000 : req.limit();
  const absl::Time from = since > absl::ZeroDuration() ? clock_->Now() - since
                                                       : absl::InfinitePast();
  std::vector<v1::AuditRecord> out;
  absl::Status s = store_->Scan(storage::kAudit, "", [&](auto, auto value) {
    v1::AuditRecord r;
    if (!r.ParseFromString(std::string(value))) return true;
    if (FromProtoTime(r.time()) < from) return true;
    if (!req.principal().empty() && r.principal() != req.principal()) {
      return true;
    }
    out.push_back(std::move(r));
    return true;
  });
  if (!s.ok()) return s;
  if (out.size() > limit) out.erase(out.begin(), out.end() - limit);
  for (size_t i = 0; i < out.size(); ++i) out[i].set_seq(i + 1);
  return out;
}

AuditScope::AuditScope(AuditLog* log, v1::AuditRecord record)
    : log_(log), record_(std::move(record)), previous_(current_scope) {
  current_scope = this;
}

AuditScope::~AuditScope() {
  current_scope = previous_;
  if (!taken_) {
    record_.set_outcome(OutcomeText(outcome_));
    log_->Write(record_).IgnoreError();
  } else if (!outcome_.ok()) {
    // The effect was written but the call still failed afterwards.
    record_.set_outcome(absl::StrCat("partial: ", OutcomeText(outcome_)));
    log_->Write(record_).IgnoreError();
  }
}

void AuditScope::SetOutcome(const absl::Status& status) { outcome_ = status; }

AuditScope* AuditScope::Current() { return current_scope; }

bool AuditScope::TakeInto(storage::WriteBatch* batch) {
  if (taken_) return false;
  v1::AuditRecord rec = record_;
  rec.set_outcome("ok");
  log_->AddTo(std::move(rec), batch);
  taken_ = true;
  return true;
}

absl::Status AuditingStore::Write(const storage::WriteBatch& batch,
                                  const storage::WriteOptions& options) {
  AuditScope* scope = AuditScope::Current();
  if (scope == nullptr || !options.sync || batch.empty()) {
    return base()->Write(batch, options);
  }
  storage::WriteBatch with_record = batch;
  if (!scope->TakeInto(&with_record)) return base()->Write(batch, options);
  absl::Status s = base()->Write(with_record, options);
  if (!s.ok()) scope->Untake();
  return s;
}

}  // namespace joule::auth
