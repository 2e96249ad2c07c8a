#include "common/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"

namespace joule::systemd {

void NotifyReady(absl::string_view status) {
  sd_notify(0, absl::StrCat("READY=1\nSTATUS=", status).c_str());
}

void NotifyWatchdog() {
  static std::atomic<int64_t> last_ms{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_ms.load(std::memory_order_relaxed);
  if (now - last < 1000) return;
  if (!last_ms.compare_exchange_strong(last, now)) return;  // another did
  sd_notify(0, "WATCHDOG=1");
}

void NotifyStopping() { sd_notify(0, "STOPPING=1"); }

void NotifyStatus(absl::string_view status) {
  sd_notify(0, absl::StrCat("STATUS=", status).c_str());
}

}  // namespace joule::systemd
