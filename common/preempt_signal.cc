#include "common/preempt_signal.h"

#include <signal.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace joule {
namespace {

struct Allowed {
  absl::string_view name;
  int number;
};
constexpr Allowed kAllowed[] = {
    {"SIGTERM", SIGTERM}, {"SIGINT", SIGINT}, {"SIGUSR1", SIGUSR1},
    {"SIGUSR2", SIGUSR2}, {"SIGHUP", SIGHUP}, {"SIGQUIT", SIGQUIT},
};

}  // namespace

absl::string_view PreemptSignalList() {
  return "SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT";
}

std::optional<std::string> CanonicalPreemptSignal(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (!absl::StartsWith(upper, "SIG")) upper = "SIG" + upper;
  for (const Allowed& a : kAllowed) {
    if (upper == a.name) return std::string(a.name);
  }
  return std::nullopt;
}

std::optional<int> PreemptSignalNumber(absl::string_view canonical) {
  if (canonical.empty()) return SIGTERM;
  for (const Allowed& a : kAllowed) {
    if (canonical == a.name) return a.number;
  }
  return std::nullopt;
}

}  // namespace joule
