#include "storage/memory_store.h"

#include <vector>

#include "absl/strings/match.h"

namespace joule::storage {

absl::Status MemoryStore::Write(const WriteBatch& batch,
                                const WriteOptions& options) {
  absl::MutexLock lock(&mu_);
  for (const WriteBatch::Op& op : batch.ops()) {
    auto& table = tables_[op.table];
    if (op.value.has_value()) {
      table[op.key] = *op.value;
    } else {
      table.erase(op.key);
    }
  }
  ++writes_;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> MemoryStore::Get(
    std::string_view table, std::string_view key) {
  absl::MutexLock lock(&mu_);
  auto t = tables_.find(std::string(table));
  if (t == tables_.end()) return std::optional<std::string>();
  auto it = t->second.find(key);
  if (it == t->second.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::Status MemoryStore::Scan(
    std::string_view table, std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) {
  // Copy the matching range so `fn` may call back into the store.
  std::vector<std::pair<std::string, std::string>> rows;
  {
    absl::MutexLock lock(&mu_);
    auto t = tables_.find(std::string(table));
    if (t == tables_.end()) return absl::OkStatus();
    for (auto it = t->second.lower_bound(prefix);
         it != t->second.end() &&
         std::string_view(it->first).starts_with(prefix);
         ++it) {
      rows.emplace_back(it->first, it->second);
    }
  }
  for (const auto& [k, v] : rows) {
    if (!fn(k, v)) break;
  }
  return absl::OkStatus();
}

int64_t MemoryStore::write_count() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

}  // namespace joule::storage
