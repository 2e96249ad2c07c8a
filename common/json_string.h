#pragma once

// JSON string literals, written by hand where a whole protobuf/JSON library
// would be too much (operator log lines, the dashboard's inlined data, the
// simulator's report). One escaping rule for all of them.

#include <string>

#include "absl/strings/string_view.h"

namespace joule {

// The body of a JSON string: `"` and `\` escaped, \n \r \t as such, other
// control characters as \u00XX, and `<` as \u003c (so the text never closes
// a <script> it is inlined into). Bytes >= 0x80 pass through (UTF-8).
std::string JsonEscape(absl::string_view s);

// JsonEscape(s) between double quotes.
std::string JsonQuote(absl::string_view s);

}  // namespace joule
