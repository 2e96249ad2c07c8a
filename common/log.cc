#include "common/log.h"

#include "common/json_string.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace joule::log {
namespace {

struct Sink {
  absl::Mutex mu;
  Format format = Format::kText;
  Level level = Level::kInfo;
  FILE* out = stderr;
};

Sink& TheSink() {
  static Sink* sink = new Sink();
  return *sink;
}

const char* LevelName(Level l, bool upper) {
  switch (l) {
    case Level::kDebug:
      return upper ? "DEBUG" : "debug";
    case Level::kInfo:
      return upper ? "INFO" : "info";
    case Level::kWarn:
      return upper ? "WARN" : "warn";
    case Level::kError:
      return upper ? "ERROR" : "error";
  }
  return "info";
}


// A text value: bare when it has no space, quote, '=' or control
// character; quoted with \" \\ \n escapes otherwise.
std::string TextValue(absl::string_view s) {
  bool bare = !s.empty();
  for (char c : s) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' ||
        static_cast<unsigned char>(c) < 0x20) {
      bare = false;
    }
  }
  if (bare) return std::string(s);
  return absl::StrCat("\"", JsonEscape(s), "\"");
}

}  // namespace

std::string FormatLine(Format format, absl::Time time, Level level,
                       absl::string_view event, const Fields& fields) {
  const std::string ts =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
  std::string line;
  if (format == Format::kJson) {
    absl::StrAppend(&line, "{\"time\":\"", ts, "\",\"level\":\"",
                    LevelName(level, false), "\",\"event\":\"",
                    JsonEscape(event), "\"");
    for (const auto& [k, v] : fields) {
      if (v.empty()) continue;
      absl::StrAppend(&line, ",\"", JsonEscape(k), "\":\"", JsonEscape(v),
                      "\"");
    }
    line += "}";
    return line;
  }
  absl::StrAppend(&line, ts, " ", LevelName(level, true), " ", event);
  for (const auto& [k, v] : fields) {
    if (v.empty()) continue;
    absl::StrAppend(&line, " ", k, "=", TextValue(v));
  }
  return line;
}

absl::Status ParseFormat(absl::string_view s, Format* out) {
  if (s == "text") {
    *out = Format::kText;
  } else if (s == "json") {
    *out = Format::kJson;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-format: \"", s, "\" is not text or json"));
  }
  return absl::OkStatus();
}

absl::Status ParseLevel(absl::string_view s, Level* out) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "debug") {
    *out = Level::kDebug;
  } else if (l == "info") {
    *out = Level::kInfo;
  } else if (l == "warn" || l == "warning") {
    *out = Level::kWarn;
  } else if (l == "error") {
    *out = Level::kError;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log-level: \"", s, "\" is not debug, info, warn or error"));
  }
  return absl::OkStatus();
}

void Configure(Format format, Level level, FILE* out) {
  Sink& s = TheSink();
  absl::MutexLock lock(&s.mu);
  s.format = format;
  s.level = level;
  s.out = out;
}

Level CurrentLevel() {
  Sink& s = TheSink();
  absl::MutexLock lock(&s.mu);
  return s.level;
}

void SetLevel(Level level) {
  Sink& s = TheSink();
  absl::MutexLock lock(&s.mu);
  s.level = level;
}

bool Enabled(Level level) {
  Sink& s = TheSink();
  absl::MutexLock lock(&s.mu);
  return level >= s.level;
}

void Log(Level level, absl::string_view event, const Fields& fields) {
  Sink& s = TheSink();
  absl::MutexLock lock(&s.mu);
  if (level < s.level) return;
  const std::string line =
      FormatLine(s.format, absl::Now(), level, event, fields) + "\n";
  fwrite(line.data(), 1, line.size(), s.out);
  fflush(s.out);
}

absl::Status ApplyLogOptions(const LogOptions& options) {
  Format format;
  Level level;
  for (const absl::Status& s : {ParseFormat(options.format, &format),
                                ParseLevel(options.level, &level)}) {
    if (!s.ok()) return s;
  }
  Configure(format, level);
  return absl::OkStatus();
}

}  // namespace joule::log
