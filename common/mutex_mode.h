// The lock checking a shipped binary runs with.
#pragma once

#include "absl/synchronization/mutex.h"

namespace joule {

// Called first thing in main() of jouled, joule-agent and joulectl. In a build
// with NDEBUG (Release, RelWithDebInfo), turns off Abseil's deadlock
// detection, as Abseil itself does in its own release builds: Debian's
// Abseil is built without NDEBUG, so every absl::Mutex::Lock and Unlock
// (ours and gRPC's, which locks through absl::Mutex) would otherwise record
// the lock order in one process-wide graph under a global spin lock. A
// Debug build keeps the detection, and so do the unit tests (they do not
// run these main()s). Not thread-safe: call it before any thread starts.
inline void UseReleaseMutexMode() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace joule
