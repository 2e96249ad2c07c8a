// daemon/knee_book.h: the learned efficiency knees are written to the store
// in bounded batches (at most once a minute per workload, at most
// KneeBook::kMaxFlushRecords a call) and read back at start, so that a
// restarted jouled answers with the knee it had learned.
#include "daemon/knee_book.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "joule/v1/records.pb.h"
#include "storage/memory_store.h"

namespace joule::daemon {
namespace {

constexpr int64_t kW = 1000;  // mW
const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// An H100 (idle 70 W, max 700 W). 20 reports at 385 W limit (share
// (385 − 70) / 630 = 500 ‰) drawing 385 W at 90 %, and 20 at 700 W (1000 ‰)
// drawing 700 W at 100 %: energy per work 385 / 90 = 4.3 against 700 /
// 100 = 7.0, so the knee is the 500 ‰ bucket, known (2 buckets of >= 10).
void Teach(KneeBook& book, const std::string& key) {
  for (int i = 0; i < 20; ++i) {
    book.Add(key, 385 * kW, 70 * kW, 700 * kW, 385 * kW, 90);
    book.Add(key, 700 * kW, 70 * kW, 700 * kW, 700 * kW, 100);
  }
}

int Records(storage::Store& store) {
  int n = 0;
  EXPECT_TRUE(store
                  .Scan(storage::kMeta, "knee/",
                        [&](auto, auto) {
                          ++n;
                          return true;
                        })
                  .ok());
  return n;
}

TEST(KneeBookTest, PersistedAndLoadedAcrossARestart) {
  storage::MemoryStore store;
  const std::string key = KneeBook::Key("acme", "train", "H100");
  {
    KneeBook book;
    Teach(book, key);
    ASSERT_EQ(book.KneePermille(key), 500);
    storage::WriteBatch batch;
    EXPECT_EQ(book.Flush(kT0, &batch), 1u);
    ASSERT_TRUE(store.Write(batch, {}).ok());
  }
  KneeBook restarted;
  ASSERT_TRUE(restarted.Load(&store).ok());
  EXPECT_EQ(restarted.KneePermille(key), 500);
  const v1::EfficiencyKnee k = restarted.Describe(key, 450);
  EXPECT_TRUE(k.learned());
  EXPECT_EQ(k.share_permille(), 500);
  EXPECT_EQ(k.samples(), 40);
  EXPECT_EQ(k.workload(), "acme/train/H100");
  // An unknown workload: the config's knee, not learned.
  const v1::EfficiencyKnee none =
      restarted.Describe(KneeBook::Key("acme", "x", "H100"), 450);
  EXPECT_FALSE(none.learned());
  EXPECT_EQ(none.share_permille(), 450);
  EXPECT_EQ(none.samples(), 0);
}

TEST(KneeBookTest, AtMostOnceAMinutePerWorkloadOverManyRounds) {
  KneeBook book;
  const std::string key = KneeBook::Key("acme", "train", "H100");
  int writes = 0;
  // 300 rounds of 1 s, a sample every round: written at 0 s, 60 s, 120 s,
  // 180 s and 240 s: 5 writes, never two within a minute.
  absl::Time last = absl::InfinitePast();
  for (int s = 0; s < 300; ++s) {
    book.Add(key, 385 * kW, 70 * kW, 700 * kW, 385 * kW, 90);
    storage::WriteBatch batch;
    const absl::Time now = kT0 + absl::Seconds(s);
    if (book.Flush(now, &batch) > 0) {
      ++writes;
      ASSERT_GE(now - last, KneeBook::kMinWriteInterval) << s;
      last = now;
    }
  }
  EXPECT_EQ(writes, 5);
  // Nothing new: nothing written, however late.
  storage::WriteBatch batch;
  book.Flush(kT0 + absl::Hours(1), &batch);  // the last samples
  storage::WriteBatch again;
  EXPECT_EQ(book.Flush(kT0 + absl::Hours(2), &again), 0u);
  // A sample without utilisation changes nothing, so nothing to write.
  book.Add(key, 385 * kW, 70 * kW, 700 * kW, 385 * kW, 0);
  EXPECT_EQ(book.Flush(kT0 + absl::Hours(3), &again), 0u);
}

TEST(KneeBookTest, BoundedBatchesUntilAllAreWritten) {
  // 250 workloads changed: batches of 100, 100 and 50.
  storage::MemoryStore store;
  KneeBook book;
  for (int i = 0; i < 250; ++i) {
    book.Add(KneeBook::Key("acme", absl::StrCat("j", i), "H100"), 385 * kW,
             70 * kW, 700 * kW, 385 * kW, 90);
  }
  for (size_t want : {100u, 100u, 50u, 0u}) {
    storage::WriteBatch batch;
    EXPECT_EQ(book.Flush(kT0, &batch), want);
    EXPECT_EQ(batch.size(), want);
    ASSERT_TRUE(store.Write(batch, {}).ok());
  }
  EXPECT_EQ(Records(store), 250);
  KneeBook loaded;
  ASSERT_TRUE(loaded.Load(&store).ok());
  EXPECT_EQ(loaded.size(), 250u);
}

TEST(KneeBookTest, ACorruptRecordIsDataLossNamingItsKey) {
  storage::MemoryStore store;
  v1::records::KneeEstimate rec;
  v1::records::KneeBucket* b = rec.add_buckets();
  b->set_count(-1);  // no estimator has that
  ASSERT_TRUE(
      store.Put(storage::kMeta, "knee/acme/train/H100", rec.SerializeAsString())
          .ok());
  KneeBook book;
  const absl::Status st = book.Load(&store);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(st.message()).find("knee/acme/train/H100"),
            std::string::npos)
      << st;
}

}  // namespace
}  // namespace joule::daemon
