#include "scheduler/dependencies.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace joule::scheduler {
namespace {

struct DepCase {
  std::string name;
  std::vector<Dep> deps;
  DepVerdict::Kind kind;
  std::string reason;
};

TEST(DependenciesTest, Table) {
  const DepCase cases[] = {
      {"none", {}, DepVerdict::kReady, ""},
      {"all succeeded",
       {{"job-1", DepState::kSucceeded, "succeeded"},
        {"job-2", DepState::kSucceeded, "succeeded"}},
       DepVerdict::kReady,
       ""},
      {"one running",
       {{"job-1", DepState::kSucceeded, "succeeded"},
        {"job-2", DepState::kActive, "running"}},
       DepVerdict::kWait,
       "waiting for job-2 (it is running) to succeed"},
      {"failure wins over waiting",
       {{"job-1", DepState::kActive, "pending"},
        {"job-2", DepState::kFailed, "failed"}},
       DepVerdict::kFail,
       "dependency job-2 failed"},
      {"cancelled",
       {{"job-1", DepState::kCancelled, "cancelled"}},
       DepVerdict::kFail,
       "dependency job-1 was cancelled"},
      {"unknown",
       {{"job-9", DepState::kUnknown, ""}},
       DepVerdict::kFail,
       "dependency job-9 does not exist"},
  };
  for (const DepCase& c : cases) {
    SCOPED_TRACE(c.name);
    const DepVerdict v = EvaluateDependencies(c.deps);
    EXPECT_EQ(v.kind, c.kind);
    EXPECT_EQ(v.reason, c.reason);
  }
}

}  // namespace
}  // namespace joule::scheduler
