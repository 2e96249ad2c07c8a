#include "common/proto_names.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace joule {
namespace {

// The names by number, index 0 (UNSPECIFIED) unused. A table instead of the
// enum's descriptor: looking a name up through the descriptor builds the
// whole joule.proto descriptor pool, ~10 % of a `joulectl job submit`
// process's instructions. tests/common/proto_names_test.cc checks every
// value of each enum against its descriptor name, so a value added to the
// proto without a name here fails that test.
constexpr absl::string_view kJobStates[] = {
    "",          "pending", "starting",  "running",
    "succeeded", "failed",  "cancelled", "preempted",
};
constexpr absl::string_view kServiceClasses[] = {
    "",
    "reserved",
    "on-demand",
    "spot",
};

template <size_t N>
std::string Name(const absl::string_view (&names)[N], int value) {
  if (value <= 0 || value >= static_cast<int>(N)) return "unspecified";
  return std::string(names[value]);
}

template <typename E, size_t N>
absl::StatusOr<E> Parse(const absl::string_view (&names)[N],
                        absl::string_view s, absl::string_view flag) {
  std::vector<std::string> listed;
  for (size_t i = 1; i < N; ++i) {
    const absl::string_view t = names[i];
    if (t == s || absl::StrReplaceAll(t, {{"-", ""}}) == s) {
      return static_cast<E>(i);
    }
    listed.emplace_back(t);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      flag, ": \"", s, "\" is not one of ", absl::StrJoin(listed, ", ")));
}

}  // namespace

std::string JobStateName(v1::JobState s) { return Name(kJobStates, s); }

std::string ServiceClassName(v1::ServiceClass c) {
  return Name(kServiceClasses, c);
}

absl::StatusOr<v1::JobState> ParseJobStateName(absl::string_view s,
                                               absl::string_view flag) {
  return Parse<v1::JobState>(kJobStates, s, flag);
}

absl::StatusOr<v1::ServiceClass> ParseServiceClassName(absl::string_view s,
                                                       absl::string_view flag) {
  return Parse<v1::ServiceClass>(kServiceClasses, s, flag);
}

}  // namespace joule
