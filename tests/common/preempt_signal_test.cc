// The preemption-notice allow-list (common/preempt_signal.h), table-driven.
#include "common/preempt_signal.h"

#include <signal.h>

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(PreemptSignalTest, CanonicalNamesAndNumbers) {
  struct Case {
    const char* in;
    std::optional<std::string> canonical;  // nullopt: refused
    int number;                            // of the canonical name
  };
  const Case cases[] = {
      {"SIGUSR1", "SIGUSR1", SIGUSR1},
      {"USR1", "SIGUSR1", SIGUSR1},
      {"sigusr2", "SIGUSR2", SIGUSR2},
      {"term", "SIGTERM", SIGTERM},
      {"SIGINT", "SIGINT", SIGINT},
      {"HUP", "SIGHUP", SIGHUP},
      {"SIGQUIT", "SIGQUIT", SIGQUIT},
      // Not notices: they cannot be trapped, stop the job, or are numbers.
      {"SIGKILL", std::nullopt, 0},
      {"SIGSTOP", std::nullopt, 0},
      {"9", std::nullopt, 0},
      {"", std::nullopt, 0},  // "SIG": not a name
      {"SIGUSR1 ", std::nullopt, 0},
      {"SIGSIGUSR1", std::nullopt, 0},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(CanonicalPreemptSignal(c.in), c.canonical) << c.in;
    if (c.canonical.has_value()) {
      EXPECT_EQ(PreemptSignalNumber(*c.canonical), c.number) << c.in;
    }
  }
  // Empty means the default, SIGTERM; a non-canonical spelling is not a
  // number (the daemon stores only canonical names).
  EXPECT_EQ(PreemptSignalNumber(""), SIGTERM);
  EXPECT_EQ(PreemptSignalNumber("usr1"), std::nullopt);
  EXPECT_EQ(PreemptSignalNumber("SIGKILL"), std::nullopt);
}

}  // namespace
}  // namespace joule
