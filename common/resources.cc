#include "common/resources.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace joule {

absl::StatusOr<int64_t> ParseMemoryBytes(absl::string_view field,
                                         absl::string_view text) {
  auto bad = [&](absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", text, "\" ", rule));
  };
  absl::string_view t = absl::StripAsciiWhitespace(text);
  int shift = 0;
  for (auto [suffix, s] : {std::pair<absl::string_view, int>{"KiB", 10},
                           {"MiB", 20},
                           {"GiB", 30},
                           {"TiB", 40},
                           {"B", 0}}) {
    if (absl::ConsumeSuffix(&t, suffix)) {
      shift = s;
      break;
    }
  }
  uint64_t n = 0;
  if (t.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(t[0])) ||
      !absl::SimpleAtoi(t, &n)) {
    return bad("is not a size; want e.g. 64GiB, 512MiB or bytes");
  }
  if (n > (static_cast<uint64_t>(kMaxJobMemoryBytes) >> shift)) {
    return bad("is more than 16TiB");
  }
  const int64_t bytes = static_cast<int64_t>(n << shift);
  if (bytes < kMinJobMemoryBytes) return bad("is less than 1MiB");
  return bytes;
}

absl::StatusOr<int64_t> ParseCpuMillis(absl::string_view field,
                                       absl::string_view text) {
  auto bad = [&](absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", text, "\" ", rule));
  };
  absl::string_view t = absl::StripAsciiWhitespace(text);
  absl::string_view whole = t, frac;
  if (size_t dot = t.find('.'); dot != absl::string_view::npos) {
    whole = t.substr(0, dot);
    frac = t.substr(dot + 1);
  }
  uint64_t w = 0, f = 0;
  auto digits = [](absl::string_view s) {
    for (char c : s) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  };
  if (whole.empty() || whole.size() > 7 || !digits(whole) || !digits(frac) ||
      frac.size() > 3 || !absl::SimpleAtoi(whole, &w) ||
      (!frac.empty() && !absl::SimpleAtoi(frac, &f))) {
    return bad(
        "is not a number of CPUs; want e.g. 16 or 0.5 (3 decimals at "
        "most)");
  }
  for (size_t i = frac.size(); i < 3; ++i) f *= 10;
  const uint64_t millis = w * 1000 + f;
  if (millis > static_cast<uint64_t>(kMaxJobCpuMillis)) {
    return bad("is more than 1024 CPUs");
  }
  if (millis < static_cast<uint64_t>(kMinJobCpuMillis)) {
    return bad("is less than 0.01 CPU");
  }
  return static_cast<int64_t>(millis);
}

std::string FormatMemoryBytes(int64_t bytes) {
  for (auto [suffix, s] : {std::pair<const char*, int>{"TiB", 40},
                           {"GiB", 30},
                           {"MiB", 20},
                           {"KiB", 10}}) {
    if (bytes > 0 && bytes % (int64_t{1} << s) == 0) {
      return absl::StrCat(bytes >> s, suffix);
    }
  }
  return absl::StrCat(bytes, "B");
}

std::string FormatCpuMillis(int64_t millis) {
  std::string out = absl::StrCat(millis / 1000);
  int64_t f = millis % 1000;
  if (f == 0) return out;
  std::string frac = absl::StrCat(1000 + f).substr(1);  // 3 digits
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return absl::StrCat(out, ".", frac);
}

}  // namespace joule
