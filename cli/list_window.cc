#include "cli/list_window.h"

#include "common/units.h"

namespace joule::cli {

void AddListWindow(CLI::App* cmd, ListWindow* w, const std::string& since_help,
                   const std::string& limit_help) {
  cmd->add_option("--since", w->since, since_help);
  cmd->add_option("--limit", w->limit, limit_help)
      ->check(CLI::Range(uint32_t{0}, kMaxListLimit));
}

absl::StatusOr<absl::Time> SinceCutoff(const std::string& since,
                                       absl::Time now) {
  if (since.empty()) return absl::InfinitePast();
  auto d = ParseNonNegativeDuration(since, "--since");
  if (!d.ok()) return d.status();
  return now - *d;
}

}  // namespace joule::cli
