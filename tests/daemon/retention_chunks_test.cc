// The bounded retention pass (ClusterManager::CompactFinishedJobs): chunks
// of kRetentionChunk jobs per hold of the lock, an array straddling a chunk
// boundary goes all together or not at all, and the cursor carries over.
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::daemon {
namespace {

const absl::Time kEnded = absl::FromUnixSeconds(1767225600);  // 2026-01-01

void PutFinished(storage::WriteBatch* b, const std::string& id,
                 const std::string& array) {
  v1::Job j;
  j.set_id(id);
  j.set_array_id(array);
  j.set_state(v1::JOB_STATE_SUCCEEDED);
  j.mutable_spec()->set_tenant("acme");
  v1::JobAttempt* a = j.add_attempts();  // one that ran: billing is asked
  a->set_attempt(1);
  *a->mutable_start_time() = ToProtoTime(kEnded - absl::Hours(1));
  *a->mutable_end_time() = ToProtoTime(kEnded);
  v1::JobTransition* h = j.add_history();
  *h->mutable_time() = ToProtoTime(kEnded);
  h->set_state(v1::JOB_STATE_SUCCEEDED);
  b->Put(storage::kJobs, id, j.SerializeAsString());
}

int64_t StoredJobs(storage::Store& s) {
  int64_t n = 0;
  EXPECT_TRUE(s.Scan(storage::kJobs, "", [&](auto, auto) {
                 ++n;
                 return true;
               }).ok());
  return n;
}

TEST(RetentionChunksTest, ArrayAcrossAChunkBoundaryGoesTogether) {
  static_assert(ClusterManager::kRetentionChunk == 1000);
  // 995 jobs, then the 10 tasks of array job-0000995 (the chunk of 1,000
  // ends after its 5th task), then 500 more jobs: 1,505 in all.
  storage::MemoryStore store;
  storage::WriteBatch b;
  for (int i = 0; i < 995; ++i)
    PutFinished(&b, absl::StrFormat("job-%07d", i), "");
  for (int t = 0; t < 10; ++t) {
    PutFinished(&b, absl::StrFormat("job-0000995_%d", t), "job-0000995");
  }
  for (int i = 996; i < 1496; ++i) {
    PutFinished(&b, absl::StrFormat("job-%07d", i), "");
  }
  ASSERT_TRUE(store.Write(b, {}).ok());
  FakeClock clock(kEnded + absl::Hours(24 * 100));
  ClusterManagerOptions o;
  o.config = config::DefaultClusterConfig();
  o.store = &store;
  o.clock = &clock;
  ClusterManager m(std::move(o));
  ASSERT_TRUE(m.Load().ok());
  ASSERT_EQ(StoredJobs(store), 1505);

  // Task 8 (past the chunk boundary) is not settled: its array stays
  // whole, every other job goes (1,495 of them, in two chunks).
  bool task8_settled = false;
  auto settled = [&](const std::string& job, uint32_t) {
    return job != "job-0000995_8" || task8_settled;
  };
  const absl::Time cutoff = kEnded + absl::Hours(1);
  auto n = m.CompactFinishedJobs(cutoff, settled);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1495);
  EXPECT_EQ(StoredJobs(store), 10);
  // The pass reached the end of the table, so the next one starts over
  // and finds the array once task 8 is settled.
  task8_settled = true;
  n = m.CompactFinishedJobs(cutoff, settled);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 10);
  EXPECT_EQ(StoredJobs(store), 0);
}

}  // namespace
}  // namespace joule::daemon
