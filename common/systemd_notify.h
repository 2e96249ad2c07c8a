#pragma once

#include "absl/strings/string_view.h"

namespace joule::systemd {

// sd_notify(3) for Type=notify units (packaging/systemd/*.service). Each is
// a no-op outside systemd (no NOTIFY_SOCKET). Thread-safe.

// READY=1 with a STATUS= line: the store is loaded and calls are served.
void NotifyReady(absl::string_view status);
// WATCHDOG=1, at most once a second (callers ping from their main loop,
// which may run far more often).
void NotifyWatchdog();
// STOPPING=1: shutdown has begun.
void NotifyStopping();
// STATUS=... (what `systemctl status` shows).
void NotifyStatus(absl::string_view status);

}  // namespace joule::systemd
