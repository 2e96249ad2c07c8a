#include "common/proto_names.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"

namespace joule {
namespace {

// JOB_STATE_PENDING with prefix JOB_STATE_ -> "pending"; '_' -> '-'.
std::string Text(const std::string& enum_name, absl::string_view prefix) {
  std::string n = enum_name.substr(prefix.size());
  return absl::StrReplaceAll(absl::AsciiStrToLower(n), {{"_", "-"}});
}

template <typename E>
std::string Name(const google::protobuf::EnumDescriptor* d, E value,
                 absl::string_view prefix) {
  const google::protobuf::EnumValueDescriptor* v = d->FindValueByNumber(value);
  if (v == nullptr || v->number() == 0) return "unspecified";
  return Text(v->name(), prefix);
}

template <typename E>
absl::StatusOr<E> Parse(const google::protobuf::EnumDescriptor* d,
                        absl::string_view s, absl::string_view prefix,
                        absl::string_view flag) {
  std::vector<std::string> names;
  for (int i = 0; i < d->value_count(); ++i) {
    const auto* v = d->value(i);
    if (v->number() == 0) continue;
    const std::string t = Text(v->name(), prefix);
    if (t == s || absl::StrReplaceAll(t, {{"-", ""}}) == s) {
      return static_cast<E>(v->number());
    }
    names.push_back(t);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      flag, ": \"", s, "\" is not one of ", absl::StrJoin(names, ", ")));
}

}  // namespace

std::string JobStateName(v1::JobState s) {
  return Name(v1::JobState_descriptor(), s, "JOB_STATE_");
}

std::string ServiceClassName(v1::ServiceClass c) {
  return Name(v1::ServiceClass_descriptor(), c, "SERVICE_CLASS_");
}

absl::StatusOr<v1::JobState> ParseJobStateName(absl::string_view s,
                                               absl::string_view flag) {
  return Parse<v1::JobState>(v1::JobState_descriptor(), s, "JOB_STATE_", flag);
}

absl::StatusOr<v1::ServiceClass> ParseServiceClassName(absl::string_view s,
                                                       absl::string_view flag) {
  return Parse<v1::ServiceClass>(v1::ServiceClass_descriptor(), s,
                                 "SERVICE_CLASS_", flag);
}

}  // namespace joule
