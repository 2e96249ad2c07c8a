#include "daemon/retention.h"

#include <string>
#include <vector>

#include "common/proto_time.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

absl::StatusOr<int64_t> CompactEvents(storage::Store* store, absl::Time cutoff,
                                      int64_t max_batch_ops) {
  const size_t per_batch =
      max_batch_ops > 0 ? static_cast<size_t>(max_batch_ops) : 1000;
  std::vector<std::string> old;
  absl::Status bad;
  absl::Status s = store->Scan(storage::kEvents, "", [&](auto key, auto value) {
    v1::Event e;
    if (!e.ParseFromString(std::string(value))) return true;  // keep it
    if (FromProtoTime(e.time()) >= cutoff) return false;
    old.emplace_back(key);
    return true;
  });
  if (!s.ok()) return s;
  int64_t deleted = 0;
  for (size_t i = 0; i < old.size(); i += per_batch) {
    storage::WriteBatch b;
    for (size_t j = i; j < old.size() && j < i + per_batch; ++j) {
      b.Delete(storage::kEvents, old[j]);
    }
    if (absl::Status w = store->Write(b, {.sync = true}); !w.ok()) return w;
    deleted += static_cast<int64_t>(b.size());
  }
  return deleted;
}

}  // namespace joule::daemon
