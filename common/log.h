#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace joule::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kText, kJson };

// Key/value pairs of one line, in the order given (job, node, domain first
// by convention). Empty values are left out.
using Fields = std::vector<std::pair<std::string, std::string>>;

// One log line without its newline. Text:
//   2026-12-01T10:32:19.123Z WARN throttle job=j-1 node=n1 msg="..."
// (values with spaces, quotes or '=' are quoted, \" and \\ escaped). JSON:
//   {"time":"...","level":"warn","event":"throttle","job":"j-1",...}
// Pure.
std::string FormatLine(Format format, absl::Time time, Level level,
                       absl::string_view event, const Fields& fields);

// "text"/"json", "debug"/"info"/"warn"/"error": INVALID_ARGUMENT naming
// the flag otherwise.
absl::Status ParseFormat(absl::string_view s, Format* out);
absl::Status ParseLevel(absl::string_view s, Level* out);

// The process's log sink: lines at or above the configured level go to
// `out` (stderr by default), one write per line. Thread-safe (a mutex
// around the write; configuration happens once at start-up, before the
// threads that log).
void Configure(Format format, Level level, FILE* out = stderr);
bool Enabled(Level level);
// The level in force, and a change of it alone (config reload).
Level CurrentLevel();
void SetLevel(Level level);
void Log(Level level, absl::string_view event, const Fields& fields);

// The --log-format and --log-level flags of jouled and joule-agent, as
// given (defaults: text, info).
struct LogOptions {
  std::string format = "text";
  std::string level = "info";
};

// Adds both flags to `app` (a CLI::App), bound to `*options`. A template so
// that joule_log does not link CLI11 (as common/cli_parse.h is header-only).
template <typename App>
void AddLogFlags(App& app, LogOptions* options) {
  app.add_option("--log-format", options->format,
                 "operator log lines on stderr: text or json");
  app.add_option("--log-level", options->level, "debug, info, warn or error");
}

// Parses both (ParseFormat, then ParseLevel) and, when both are valid,
// Configure()s the sink with them; otherwise the first error, naming its
// flag, and the sink is left as it was.
absl::Status ApplyLogOptions(const LogOptions& options);

}  // namespace joule::log
