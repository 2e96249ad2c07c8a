#pragma once

// The signals a job may ask to get as its preemption notice
// (`job submit --preempt-signal`, JobSpec.preempt_signal): one allow-list
// shared by joulectl (early refusal), jouled (validation) and joule-agent
// (name -> number). Pure.

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace joule {

// "SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT": for error messages
// and docs.
absl::string_view PreemptSignalList();

// The canonical name ("SIGUSR1") of an allowed signal written as "SIGUSR1",
// "USR1", "sigusr1" or "usr1"; nullopt for anything else (numbers,
// SIGKILL, SIGSTOP, unknown names).
std::optional<std::string> CanonicalPreemptSignal(absl::string_view name);

// The signal number of a canonical allowed name; empty means SIGTERM (the
// default notice). nullopt for a name not on the list.
std::optional<int> PreemptSignalNumber(absl::string_view canonical);

}  // namespace joule
