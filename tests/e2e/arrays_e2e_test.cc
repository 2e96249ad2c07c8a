// Job arrays end to end (issue 14): `joulectl job submit --array` against a
// real jouled and agent; tasks run as real processes and see
// JOULE_ARRAY_ID / JOULE_ARRAY_INDEX; %MAX_RUNNING holds over several
// scheduling rounds; `job list` folds an array unless --expand; cancel of
// one task and of the whole array; `--wait`.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

class ArraysE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<Cluster>();
    cluster_->StartDaemon();
    cluster_->StartAgent("n1");
    ASSERT_TRUE(WaitFor([&] {
      v1::ListNodesResponse r;
      cluster_->CtlJson({"node", "list"}, &r);
      return r.nodes_size() == 1 && r.nodes(0).state() == v1::NODE_STATE_READY;
    }));
    ASSERT_EQ(Ctl({"tenant", "create", "acme"}).exit_code, 0);
  }
  CtlResult Ctl(std::vector<std::string> args) { return cluster_->Ctl(args); }
  std::vector<v1::Job> Tasks(const std::string& array) {
    v1::ListJobsResponse r;
    cluster_->CtlJson({"job", "list", "--array", array}, &r);
    return {r.jobs().begin(), r.jobs().end()};
  }
  static bool Ended(v1::JobState s) {
    return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
           s == v1::JOB_STATE_CANCELLED;
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ArraysE2E, TasksSeeTheirIndexAndMaxRunningHolds) {
  // 6 one-GPU tasks on a node of 8 free GPUs, at most 2 at once: each task
  // records its index and sleeps a little, so several rounds are needed.
  CtlResult sub = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                       "--array", "0-5%2", "--", "sh", "-c",
                       "echo task=$JOULE_ARRAY_INDEX of=$JOULE_ARRAY_ID; "
                       "sleep 0.3"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string array(absl::StripAsciiWhitespace(sub.out));
  ASSERT_TRUE(absl::StartsWith(array, "job-")) << array;

  // Poll while the array runs: never more than 2 tasks hold GPUs.
  int most_holding = 0;
  std::set<uint32_t> ever_held;
  ASSERT_TRUE(WaitFor(
      [&] {
        int holding = 0;
        bool all_ended = true;
        for (const v1::Job& j : Tasks(array)) {
          if (j.state() == v1::JOB_STATE_STARTING ||
              j.state() == v1::JOB_STATE_RUNNING) {
            ++holding;
            ever_held.insert(j.array_index());
          }
          all_ended = all_ended && Ended(j.state());
        }
        most_holding = std::max(most_holding, holding);
        return all_ended;
      },
      absl::Seconds(30)));
  EXPECT_LE(most_holding, 2);
  EXPECT_GE(ever_held.size(), 2u) << "the limit was seen over several rounds";

  const std::vector<v1::Job> tasks = Tasks(array);
  ASSERT_EQ(tasks.size(), 6u);
  for (const v1::Job& j : tasks) {
    EXPECT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED)
        << j.id() << " " << j.reason();
    EXPECT_EQ(j.id(), absl::StrCat(array, "_", j.array_index()));
    CtlResult logs = Ctl({"job", "logs", j.id()});
    ASSERT_EQ(logs.exit_code, 0) << logs.err;
    EXPECT_TRUE(absl::StrContains(
        logs.out, absl::StrCat("task=", j.array_index(), " of=", array)))
        << logs.out;
  }
  // Tasks start lowest index first: task 0 starts before task 5.
  auto start_of = [&](uint32_t index) {
    for (const v1::Job& j : tasks) {
      if (j.array_index() == index)
        return j.attempts(0).start_time().seconds() * 1000000000 +
               j.attempts(0).start_time().nanos();
    }
    return int64_t{0};
  };
  EXPECT_LT(start_of(0), start_of(5));
}

TEST_F(ArraysE2E, ListFoldsUnlessExpandedAndCancelOneThenAll) {
  CtlResult sub = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                       "--array", "0-19%4", "--", "sleep", "30"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string array(absl::StripAsciiWhitespace(sub.out));
  ASSERT_TRUE(WaitFor([&] {
    int running = 0;
    for (const v1::Job& j : Tasks(array))
      running += j.state() == v1::JOB_STATE_RUNNING;
    return running == 4;
  }));

  // Folded: one row for the array (plus the header).
  CtlResult folded = Ctl({"job", "list"});
  ASSERT_EQ(folded.exit_code, 0) << folded.err;
  std::vector<std::string> lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(folded.out), '\n');
  ASSERT_EQ(lines.size(), 2u) << folded.out;
  EXPECT_TRUE(absl::StrContains(lines[1], array + "_[0-19]")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "mixed")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "16 pending, 4 running")) << lines[1];
  CtlResult expanded = Ctl({"job", "list", "--expand"});
  lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(expanded.out), '\n');
  EXPECT_EQ(lines.size(), 21u) << expanded.out;

  // One task.
  const std::string task3 = array + "_3";
  CtlResult one = Ctl({"job", "cancel", task3});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_TRUE(WaitFor([&] {
    for (const v1::Job& j : Tasks(array)) {
      if (j.id() == task3) return j.state() == v1::JOB_STATE_CANCELLED;
    }
    return false;
  }));
  int others_ended = 0;
  for (const v1::Job& j : Tasks(array))
    others_ended += j.id() != task3 && Ended(j.state());
  EXPECT_EQ(others_ended, 0);

  // The whole array: every task ends cancelled, nothing runs any more.
  CtlResult all = Ctl({"job", "cancel", array});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const v1::Job& j : Tasks(array)) {
          if (j.state() != v1::JOB_STATE_CANCELLED) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  // A second cancel of the array: nothing left to cancel.
  CtlResult again = Ctl({"job", "cancel", array});
  EXPECT_EQ(again.exit_code, 1) << again.out;
}

TEST_F(ArraysE2E, WaitReturnsWhenEveryTaskEndedAndBadArraysAreRefused) {
  CtlResult sub = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                       "--array", "0-9", "--wait", "--", "true"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string array(absl::StripAsciiWhitespace(sub.out));
  for (const v1::Job& j : Tasks(array)) {
    EXPECT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED) << j.id();
  }
  CtlResult fail = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                        "--wait", "--", "false"});
  EXPECT_EQ(fail.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(fail.err, "failed")) << fail.err;

  for (const char* bad : {"5-1", "a-b", "0-3%0", "4-"}) {
    CtlResult r = Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                       "--array", bad, "--", "true"});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_TRUE(absl::StrContains(r.err, "--array")) << r.err;
  }
  // Nothing was submitted by the refused ones: 10 tasks + 1 job.
  v1::ListJobsResponse all;
  cluster_->CtlJson({"job", "list"}, &all);
  EXPECT_EQ(all.jobs_size(), 11);
}

}  // namespace
}  // namespace joule::e2e
