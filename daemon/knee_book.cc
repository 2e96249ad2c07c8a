#include "daemon/knee_book.h"

#include <vector>

#include "common/proto_time.h"
#include "common/status_macros.h"
#include "joule/v1/records.pb.h"

namespace joule::daemon {
namespace {

// kMeta key prefix of the knee records (records.proto KneeEstimate).
constexpr absl::string_view kKneePrefix = "knee/";

}  // namespace

void KneeBook::Add(const std::string& key, int64_t limit_mw, int64_t idle_mw,
                   int64_t max_mw, int64_t draw_mw, uint32_t util_pct) {
  auto it = book_.find(key);
  if (it == book_.end()) {
    if (book_.size() >= kMaxWorkloads) return;
    it = book_.emplace(key, Entry{}).first;
  }
  const int64_t before = it->second.estimator.total_count();
  it->second.estimator.Add(
      scheduler::KneeEstimator::SharePermille(limit_mw, idle_mw, max_mw),
      draw_mw, util_pct, config_);
  // Ignored samples (no utilisation) change nothing to write.
  if (it->second.estimator.total_count() != before) dirty_.insert(key);
}

int64_t KneeBook::KneePermille(const std::string& key) const {
  auto it = book_.find(key);
  return scheduler::LearnedKneePermille(
      it == book_.end() ? nullptr : &it->second.estimator, config_, 0);
}

v1::EfficiencyKnee KneeBook::Describe(const std::string& key,
                                      int64_t config_permille) const {
  v1::EfficiencyKnee k;
  k.set_workload(key);
  const int64_t learned = KneePermille(key);
  k.set_learned(learned > 0);
  k.set_share_permille(learned > 0 ? learned : config_permille);
  auto it = book_.find(key);
  k.set_samples(it == book_.end() ? 0 : it->second.estimator.total_count());
  return k;
}

absl::Status KneeBook::Load(storage::Store* store) {
  absl::Status bad;
  RETURN_IF_ERROR(store->Scan(
      storage::kMeta, std::string(kKneePrefix), [&](auto key, auto value) {
        v1::records::KneeEstimate rec;
        Entry e;
        bool ok = rec.ParseFromString(std::string(value)) &&
                  rec.buckets_size() <= scheduler::KneeEstimator::kBuckets;
        for (int b = 0; ok && b < rec.buckets_size(); ++b) {
          const v1::records::KneeBucket& s = rec.buckets(b);
          ok = e.estimator.Restore(
              b, {s.count(), s.share_sum(), s.draw_sum(), s.util_sum()});
        }
        if (!ok) {
          bad = absl::DataLossError(absl::StrCat(
              "cannot restore ", std::string(storage::kMeta), " record ",
              std::string(key), ": not a knee estimate"));
          return false;
        }
        if (book_.size() >= kMaxWorkloads) return false;
        e.written = FromProtoTime(rec.updated());
        book_[std::string(key.substr(kKneePrefix.size()))] = std::move(e);
        return true;
      }));
  return bad;
}

size_t KneeBook::Flush(absl::Time now, storage::WriteBatch* batch) {
  std::vector<std::string> done;
  for (const std::string& key : dirty_) {
    if (done.size() >= kMaxFlushRecords) break;
    Entry& e = book_.at(key);
    if (now - e.written < kMinWriteInterval) continue;
    v1::records::KneeEstimate rec;
    for (int b = 0; b < scheduler::KneeEstimator::kBuckets; ++b) {
      const scheduler::KneeEstimator::Sums s = e.estimator.sums(b);
      v1::records::KneeBucket* out = rec.add_buckets();
      out->set_count(s.count);
      out->set_share_sum(s.share_sum);
      out->set_draw_sum(s.draw_sum);
      out->set_util_sum(s.util_sum);
    }
    *rec.mutable_updated() = ToProtoTime(now);
    batch->Put(storage::kMeta, absl::StrCat(kKneePrefix, key),
               rec.SerializeAsString());
    e.written = now;
    done.push_back(key);
  }
  for (const std::string& key : done) dirty_.erase(key);
  return done.size();
}

}  // namespace joule::daemon
