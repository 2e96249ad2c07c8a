// Ledger: the usage idempotency records at rest: loading the index of packs
// and single records (Load), and deleting those past the dedup window.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "billing/ledger.h"
#include "billing/ledger_internal.h"
#include "billing/strings.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::billing {

namespace {

using v1::billing::UsageRecord;

uint64_t KeyHash(std::string_view usage_key) {
  return absl::Hash<std::string_view>{}(usage_key);
}

}  // namespace

absl::Status Ledger::LoadUsageLocked() {
  usage_index_.Clear();
  // Single records: future-dated events, and every record from before
  // packs. Keys from before the source scope (`tenant \0 key`) are
  // migrated to (tenant, "operator", key) in one batch.
  storage::WriteBatch migrate;
  absl::Status failed = absl::OkStatus();
  RETURN_IF_ERROR(store_->Scan(storage::kUsage, "", [&](auto key, auto value) {
    if (std::count(key.begin(), key.end(), '\0') == 1) {
      UsageRecord r;
      if (!r.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
        failed = DataLoss(storage::kUsage, key);
        return false;
      }
      const size_t sep = key.find('\0');
      r.set_source("operator");
      const std::string new_key =
          UsageKey(key.substr(0, sep), "operator", key.substr(sep + 1));
      migrate.Delete(storage::kUsage, key);
      migrate.Put(storage::kUsage, new_key, r.SerializeAsString());
      usage_index_.Add(KeyHash(new_key), UsageIndex::kSingle);
      return true;
    }
    usage_index_.Add(KeyHash(key), UsageIndex::kSingle);
    return true;
  }));
  RETURN_IF_ERROR(failed);
  if (!migrate.empty()) {
    RETURN_IF_ERROR(store_->Write(migrate, {.sync = true}));
  }
  // Packs: only their keys are read.
  std::vector<uint64_t> hashes;
  RETURN_IF_ERROR(
      store_->Scan(storage::kUsagePacks, "", [&](auto key, auto value) {
        int64_t newest_s = 0;
        uint64_t seq = 0;
        hashes.clear();
        if (!ParsePackKey(key, &newest_s, &seq) ||
            !ForEachPackKey(value, [&](std::string_view k) {
              hashes.push_back(KeyHash(k));
            })) {
          failed = DataLoss(storage::kUsagePacks, key);
          return false;
        }
        const uint32_t slot = usage_index_.AddPack(
            newest_s, seq, static_cast<int64_t>(hashes.size()));
        for (uint64_t h : hashes) usage_index_.Add(h, slot);
        return true;
      }));
  return failed;
}

absl::StatusOr<int64_t> Ledger::DeletePacks(
    const std::vector<uint32_t>& slots) {
  const int64_t limit = store_->max_batch_ops();
  const size_t per = limit > 0 ? static_cast<size_t>(limit) : 1000;
  int64_t deleted = 0;
  for (size_t i = 0; i < slots.size(); i += per) {
    storage::WriteBatch batch;
    // Per pack: its slot and its keys' hashes, read from the store.
    std::vector<std::pair<uint32_t, std::vector<uint64_t>>> gone;
    for (size_t j = i; j < slots.size() && j < i + per; ++j) {
      std::string pkey;
      {
        absl::ReaderMutexLock lock(&mu_);
        const UsageIndex::Pack& p = usage_index_.pack(slots[j]);
        pkey = PackKey(p.newest_s, p.seq);
      }
      ASSIGN_OR_RETURN(std::optional<std::string> v,
                       store_->Get(storage::kUsagePacks, pkey));
      std::vector<uint64_t> hashes;
      if (v.has_value() && !ForEachPackKey(*v, [&](std::string_view k) {
            hashes.push_back(KeyHash(k));
          })) {
        return DataLoss(storage::kUsagePacks, pkey);
      }
      batch.Delete(storage::kUsagePacks, pkey);
      gone.emplace_back(slots[j], std::move(hashes));
    }
    RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
    absl::MutexLock lock(&mu_);
    for (auto& [slot, hashes] : gone) {
      for (uint64_t h : hashes) usage_index_.Remove(h, slot);
      deleted += static_cast<int64_t>(hashes.size());
      usage_index_.RemovePack(slot);
    }
  }
  return deleted;
}

absl::StatusOr<int64_t> Ledger::CompactUsageRecords() {
  absl::MutexLock compacting(&compact_mu_);
  absl::Time cutoff;
  std::vector<uint32_t> expired;
  {
    absl::MutexLock lock(&mu_);
    if (usage_dedup_window_ == absl::InfiniteDuration()) return 0;
    cutoff = clock_->Now() - usage_dedup_window_;
    // A pack whose newest event (whole seconds, rounded down) is before
    // the cutoff's second holds only events older than the cutoff.
    expired = usage_index_.PacksBefore(absl::ToUnixSeconds(cutoff));
  }
  // Events older than the cutoff are refused, so no writer touches these
  // records while they are read and deleted.
  ASSIGN_OR_RETURN(int64_t deleted, DeletePacks(expired));
  // Single records (future-dated, or from before packs).
  std::vector<std::string> old;
  UsageRecord rec;
  RETURN_IF_ERROR(store_->Scan(storage::kUsage, "", [&](auto key, auto value) {
    if (rec.ParseFromString(std::string(value)) &&
        FromProtoTime(rec.time()) < cutoff) {
      old.emplace_back(key);
    }
    return true;
  }));
  const int64_t limit = store_->max_batch_ops();
  const size_t per = limit > 0 ? static_cast<size_t>(limit) : 1000;
  for (size_t i = 0; i < old.size(); i += per) {
    storage::WriteBatch batch;
    for (size_t j = i; j < old.size() && j < i + per; ++j) {
      batch.Delete(storage::kUsage, old[j]);
    }
    RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
    absl::MutexLock lock(&mu_);
    for (size_t j = i; j < old.size() && j < i + per; ++j) {
      usage_index_.Remove(KeyHash(old[j]), UsageIndex::kSingle);
    }
    deleted += static_cast<int64_t>(batch.size());
  }
  return deleted;
}

}  // namespace joule::billing
