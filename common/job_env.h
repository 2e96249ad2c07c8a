#pragma once

// Rules for job environment variable names, shared by the daemon (which
// refuses bad names at submission) and the agent (which builds the job's
// environment and drops anything that slipped through).

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace joule {

// [A-Za-z_][A-Za-z0-9_]*, at most 128 bytes.
inline bool ValidEnvName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  if (!absl::ascii_isalpha(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// Names Joule sets for every job; a job may not set them itself.
inline bool ReservedEnvName(absl::string_view name) {
  return name == "CUDA_VISIBLE_DEVICES" || name == "NVIDIA_VISIBLE_DEVICES" ||
         absl::StartsWith(name, "JOULE_");
}

}  // namespace joule
