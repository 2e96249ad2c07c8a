// joulectl's array helpers (cli/arrays.h): --array parsing and the folding
// of an array's tasks into one `job list` row.
#include "cli/arrays.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseArrayFlagTest, Forms) {
  struct Case {
    const char* in;
    bool ok;
    uint32_t first, last, max;
    const char* error;
  } cases[] = {
      {"0-999", true, 0, 999, 0, ""},
      {"0-999%8", true, 0, 999, 8, ""},
      {"7", true, 7, 7, 0, ""},  // one task
      {"3-3%1", true, 3, 3, 1, ""},
      {"5-1", false, 0, 0, 0, "above the last"},
      {"a-b", false, 0, 0, 0, "not a number"},
      {"0-3%0", false, 0, 0, 0, ">= 1"},
      {"4-", false, 0, 0, 0, "last index"},
      {"-4", false, 0, 0, 0, "first index"},
      {"0-99999999999", false, 0, 0, 0, "not a number"},  // > 2^32 - 1
      {"", false, 0, 0, 0, "first index"},
  };
  for (const Case& c : cases) {
    auto a = ParseArrayFlag(c.in);
    ASSERT_EQ(a.ok(), c.ok) << c.in << ": " << a.status();
    if (c.ok) {
      EXPECT_EQ(a->first(), c.first) << c.in;
      EXPECT_EQ(a->last(), c.last) << c.in;
      EXPECT_EQ(a->max_running(), c.max) << c.in;
    } else {
      EXPECT_THAT(a.status().message(), HasSubstr("--array"));
      EXPECT_THAT(a.status().message(), HasSubstr(c.error)) << c.in;
    }
  }
}

v1::Job J(const std::string& id, v1::JobState state,
          const std::string& array = "", uint32_t index = 0,
          const std::string& node = "") {
  v1::Job j;
  j.set_id(id);
  j.set_state(state);
  j.mutable_spec()->set_tenant("acme");
  j.mutable_spec()->set_gpus_per_node(1);
  j.set_effective_class(v1::SERVICE_CLASS_ON_DEMAND);
  j.set_array_id(array);
  j.set_array_index(index);
  if (!node.empty()) j.add_allocations()->set_node(node);
  return j;
}

TEST(JobRowsTest, FoldsAnArrayIntoOneRowUnlessExpanded) {
  google::protobuf::RepeatedPtrField<v1::Job> jobs;
  *jobs.Add() = J("job-000001", v1::JOB_STATE_SUCCEEDED);
  *jobs.Add() = J("job-000002_0", v1::JOB_STATE_RUNNING, "job-000002", 0, "n2");
  *jobs.Add() = J("job-000002_1", v1::JOB_STATE_RUNNING, "job-000002", 1, "n1");
  *jobs.Add() = J("job-000002_10", v1::JOB_STATE_PENDING, "job-000002", 10);
  *jobs.Add() = J("job-000002_2", v1::JOB_STATE_SUCCEEDED, "job-000002", 2);
  *jobs.Add() = J("job-000013", v1::JOB_STATE_PENDING);
  *jobs.Add() = J("job-000014_0", v1::JOB_STATE_PENDING, "job-000014", 0);

  auto rows = JobRows(jobs, /*expand=*/false);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0][0], "job-000001");
  // 2 running, 1 pending, 1 succeeded: "mixed", nodes of running tasks.
  EXPECT_THAT(rows[1],
              ElementsAre("job-000002_[0-10]", "acme", "", "mixed", "on-demand",
                          "1", "n1,n2", "1 pending, 2 running, 1 succeeded"));
  EXPECT_EQ(rows[2][0], "job-000013");
  // One state only: that state.
  EXPECT_EQ(rows[3][0], "job-000014_[0-0]");
  EXPECT_EQ(rows[3][3], "pending");

  EXPECT_EQ(JobRows(jobs, /*expand=*/true).size(), 7u);
}

}  // namespace
}  // namespace joule::cli
