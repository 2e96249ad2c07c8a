#pragma once

// RFC 4180 CSV for `joulectl usage import` and the finance export: records
// separated by CRLF or LF, fields by ',', quoted fields ("a,b", "say ""hi""")
// that may hold commas, quotes and line breaks, a UTF-8 byte-order mark at the
// start skipped. Pure (no I/O beyond the stream it is given); tested in
// tests/cli/csv_test.cc.

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {

// Reads records from a stream. Not thread-safe.
class CsvReader {
 public:
  explicit CsvReader(std::istream* in) : in_(in) {}
  // Reads the next record into `fields`. false at the end of the input;
  // INVALID_ARGUMENT "line L, column C: ..." for a malformed record (a quote
  // inside an unquoted field, text after a closing quote, an unterminated
  // quoted field).
  absl::StatusOr<bool> Next(std::vector<std::string>* fields);
  // Line (1-based) on which the last record returned started.
  int record_line() const { return record_line_; }
  // Bytes consumed so far (for a progress line).
  int64_t bytes() const { return bytes_; }

 private:
  int Get();
  int Peek();
  std::istream* in_;
  int line_ = 1;
  int record_line_ = 0;
  int64_t bytes_ = 0;
  bool started_ = false;
};

// Where each column of a usage CSV is, found by header name (any order,
// extra columns ignored, names case-insensitive and trimmed). Required:
// timestamp, tenant, model, input_tokens, output_tokens, idempotency_key;
// optional: requests (default 1 per row).
struct UsageColumns {
  int timestamp = -1, tenant = -1, model = -1, requests = -1, input = -1,
      output = -1, key = -1;
  size_t width = 0;
};
absl::StatusOr<UsageColumns> ParseUsageHeader(
    const std::vector<std::string>& header);

// One usage row; errors are "line L, column C (name): rule". Counts are
// plain decimal digits: no sign ("+7" and "-1" are refused), no spaces
// inside, at most 19 digits.
absl::StatusOr<v1::UsageEvent> ParseUsageRow(
    const std::vector<std::string>& fields, const UsageColumns& cols, int line);

// A count flag or field: decimal digits only. INVALID_ARGUMENT naming
// `what` otherwise.
absl::StatusOr<int64_t> ParseCount(absl::string_view text,
                                   absl::string_view what);

// RFC 4180 field: quoted when it holds a comma, quote, CR or LF.
std::string CsvField(absl::string_view v);

}  // namespace joule::cli
