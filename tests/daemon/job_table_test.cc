// JobTable's queue (daemon/job_table.h): the PENDING jobs in seq order,
// each with the offer the scheduling round copies, kept through every way
// a job enters or leaves PENDING; and QueueEntry's offer and flags.
#include "daemon/job_table.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::daemon {
namespace {

// A pending job "job-<seq>" of tenant acme, 2 GPUs on 1 node, a 1 h time
// limit of its own.
JobRt Pending(uint64_t seq) {
  JobRt j;
  j.job.set_id(absl::StrCat("job-", seq));
  j.job.set_seq(seq);
  j.job.set_state(v1::JOB_STATE_PENDING);
  j.job.mutable_spec()->set_tenant("acme");
  j.job.mutable_spec()->set_gpus_per_node(2);
  *j.job.mutable_time_limit() = ToProtoDuration(absl::Hours(1));
  return j;
}

class JobTableQueueTest : public ::testing::Test {
 protected:
  // The queue's ids in order; checks the invariants on the way: the same
  // ids as pending(), each entry's record is that job, keyed by its seq.
  std::vector<std::string> Queue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> ids;
    for (const auto& [key, q] : table_.queue()) {
      EXPECT_EQ(q.rt, table_.Find(key.second)) << key.second;
      EXPECT_EQ(q.offer.seq, key.first) << key.second;
      EXPECT_EQ(q.offer.id, key.second);
      EXPECT_TRUE(table_.pending().contains(key.second)) << key.second;
      ids.push_back(key.second);
    }
    EXPECT_EQ(ids.size(), table_.pending().size());
    return ids;
  }

  absl::Mutex mu_;
  config::ClusterConfig config_;
  JobTable table_{&mu_, &config_};
};

TEST_F(JobTableQueueTest, SeqOrderThroughEveryWayInAndOut) {
  absl::MutexLock lock(&mu_);
  const absl::Time t = absl::FromUnixSeconds(100);
  using Ids = std::vector<std::string>;
  // Inserted out of order: the queue is by seq (10 < 9 as strings, not as
  // seqs).
  table_.Insert(Pending(10));
  table_.Insert(Pending(9));
  table_.Insert(Pending(11));
  EXPECT_EQ(Queue(), (Ids{"job-9", "job-10", "job-11"}));
  // Placed: out of the queue.
  table_.Transition(table_.at("job-10"), v1::JOB_STATE_STARTING, "placed", t);
  EXPECT_EQ(Queue(), (Ids{"job-9", "job-11"}));
  // Requeued (a preemption or a lost node): back at its own seq.
  table_.Transition(table_.at("job-10"), v1::JOB_STATE_PENDING, "requeued", t);
  EXPECT_EQ(Queue(), (Ids{"job-9", "job-10", "job-11"}));
  // PENDING again while pending (no duplicate entry).
  table_.Transition(table_.at("job-10"), v1::JOB_STATE_PENDING, "again", t);
  EXPECT_EQ(Queue(), (Ids{"job-9", "job-10", "job-11"}));
  // Cancelled while pending; PREEMPTED is history only, the job stays.
  table_.Transition(table_.at("job-9"), v1::JOB_STATE_CANCELLED, "x", t);
  table_.Transition(table_.at("job-11"), v1::JOB_STATE_PREEMPTED, "y", t);
  EXPECT_EQ(Queue(), (Ids{"job-10", "job-11"}));
  // Not yet durable (SubmitJob's record before its write), then forgotten.
  table_.Deactivate("job-11");
  EXPECT_EQ(Queue(), (Ids{"job-10"}));
  table_.Transition(table_.at("job-10"), v1::JOB_STATE_FAILED, "z", t);
  table_.Erase("job-10");
  EXPECT_EQ(Queue(), Ids{});
  // Inserted already placed: never queued.
  JobRt running = Pending(12);
  running.job.set_state(v1::JOB_STATE_RUNNING);
  table_.Insert(std::move(running));
  EXPECT_EQ(Queue(), Ids{});
}

TEST_F(JobTableQueueTest, LoadQueuesThePendingRecords) {
  storage::MemoryStore store;
  storage::WriteBatch batch;
  for (const auto& [seq, state] : {std::pair{3, v1::JOB_STATE_PENDING},
                                   {1, v1::JOB_STATE_RUNNING},
                                   {2, v1::JOB_STATE_PENDING},
                                   {4, v1::JOB_STATE_SUCCEEDED}}) {
    JobRt j = Pending(seq);
    j.job.set_state(state);
    batch.Put(storage::kJobs, j.job.id(), j.job.SerializeAsString());
  }
  ASSERT_TRUE(store.Write(batch, {.sync = true}).ok());
  absl::MutexLock lock(&mu_);
  ASSERT_TRUE(
      table_
          .Load(
              &store, 1, [](const auto&, const auto&) {}, [](const auto&) {})
          .ok());
  EXPECT_EQ(Queue(), (std::vector<std::string>{"job-2", "job-3"}));
}

struct EntryCase {
  std::string name;
  std::function<void(v1::Job&)> change;
  bool round_fields;
  bool array_limited;
};

TEST(QueueEntryTest, OfferFromTheRecordAndWhenTheRoundAddsFields) {
  const EntryCase cases[] = {
      // Everything the round would compute is in the record: powers stay 0
      // (OffsetPower(0, any) = 0), max_runtime is the job's own 1 h.
      {"plain", [](v1::Job&) {}, false, false},
      {"power limit (offset by idle)",
       [](v1::Job& j) { j.mutable_spec()->set_power_limit_mw(500'000); }, true,
       false},
      {"min power limit",
       [](v1::Job& j) { j.mutable_spec()->set_min_power_limit_mw(300'000); },
       true, false},
      {"efficiency (learned knee)",
       [](v1::Job& j) {
         j.mutable_spec()->set_power_mode(v1::POWER_MODE_EFFICIENCY);
       },
       true, false},
      {"no time limit of its own (the config's)",
       [](v1::Job& j) { j.clear_time_limit(); }, true, false},
      {"array task with max_running",
       [](v1::Job& j) { j.set_array_max_running(4); }, false, true},
  };
  for (const EntryCase& c : cases) {
    SCOPED_TRACE(c.name);
    JobRt j = Pending(7);
    j.job.mutable_spec()->set_priority(5);
    j.job.mutable_spec()->set_service_class(v1::SERVICE_CLASS_SPOT);
    j.job.mutable_spec()->set_gpu_model("H100");
    c.change(j.job);
    const QueuedJob q = QueueEntry(j);
    EXPECT_EQ(q.rt, &j);
    EXPECT_EQ(q.round_fields, c.round_fields);
    EXPECT_EQ(q.array_limited, c.array_limited);
    const scheduler::PendingJob& p = q.offer;
    EXPECT_EQ(p.id, "job-7");
    EXPECT_EQ(p.tenant, "acme");
    EXPECT_EQ(p.cls, scheduler::ServiceClass::kSpot);
    EXPECT_EQ(p.priority, 5);
    EXPECT_EQ(p.seq, 7u);
    EXPECT_EQ(p.gpus_per_node, 2u);
    EXPECT_EQ(p.nodes, 1u);  // 0 in the spec = 1
    EXPECT_EQ(p.gpu_model, "H100");
    EXPECT_EQ(p.power_mw, 0);
    EXPECT_EQ(p.min_power_mw, 0);
    EXPECT_FALSE(p.efficiency);
    if (!c.round_fields) EXPECT_EQ(p.max_runtime, absl::Hours(1));
  }
}

}  // namespace
}  // namespace joule::daemon
