#include "scheduler/dependencies.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace joule::scheduler {

DepVerdict EvaluateDependencies(absl::Span<const Dep> deps) {
  std::vector<std::string> waiting;
  for (const Dep& d : deps) {
    switch (d.state) {
      case DepState::kUnknown:
        return {DepVerdict::kFail,
                absl::StrCat("dependency ", d.id, " does not exist")};
      case DepState::kFailed:
        return {DepVerdict::kFail,
                absl::StrCat("dependency ", d.id, " ",
                             d.state_name.empty() ? "failed" : d.state_name)};
      case DepState::kCancelled:
        return {DepVerdict::kFail,
                absl::StrCat("dependency ", d.id, " was cancelled")};
      case DepState::kActive:
        waiting.push_back(
            d.state_name.empty()
                ? d.id
                : absl::StrCat(d.id, " (it is ", d.state_name, ")"));
        break;
      case DepState::kSucceeded:
        break;
    }
  }
  if (waiting.empty()) return {};
  return {DepVerdict::kWait,
          absl::StrCat("waiting for ", absl::StrJoin(waiting, ", "),
                       " to succeed")};
}

}  // namespace joule::scheduler
