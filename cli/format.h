#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {

// A plain text table: a header row and data rows, columns padded to the
// widest cell. Rendered in the current output format (cli/output.h): `table`
// leaves out the columns marked wide-only, `wide` shows them, `csv` prints
// RFC 4180 records (every column, money as plain decimals). Money columns
// are right-aligned with thousands separators in `table` and `wide`. Not
// thread-safe (build and print on one thread).
class Table {
 public:
  explicit Table(std::vector<std::string> header)
      : header_(std::move(header)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns (by header) shown only with `-o wide` (and in CSV).
  void WideOnly(std::vector<std::string> headers) {
    wide_only_ = std::move(headers);
  }
  // Columns (by header) holding money as plain decimals ("1234.56").
  void Money(std::vector<std::string> headers) { money_ = std::move(headers); }
  std::string Render() const;

 private:
  // Aligned text of `cells` (the header first); `right`: per column.
  static std::string RenderAligned(
      const std::vector<std::vector<std::string>>& cells,
      const std::vector<bool>& right);

  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::string> wide_only_;
  std::vector<std::string> money_;
};

// "1234.56" from cents (exact; never through floating point).
std::string FormatCents(int64_t cents);
// The same with thousands separators ("1,234.56"), for text that is not CSV.
std::string FormatCentsGrouped(int64_t cents);
// "USD 1,234.56"-free plain decimal for CSV and tables: see FormatCents.

// "on-demand" / "spot" / "reserved" <-> enum. Errors name the flag.
absl::StatusOr<v1::ServiceClass> ParseServiceClass(absl::string_view s);
std::string ServiceClassName(v1::ServiceClass c);
std::string JobStateName(v1::JobState s);
absl::StatusOr<v1::JobState> ParseJobState(absl::string_view s);

// One row of a `usage import` CSV:
// timestamp,tenant,model,requests,input_tokens,output_tokens,idempotency_key
// Errors say "line N: column: rule".
absl::StatusOr<v1::UsageEvent> ParseUsageCsvLine(absl::string_view line,
                                                 int line_number);
inline constexpr absl::string_view kUsageCsvHeader =
    "timestamp,tenant,model,requests,input_tokens,output_tokens,"
    "idempotency_key";

// The index N of the first "events[N]" in an error message, or -1.
int EventIndexInMessage(absl::string_view message);

// Protobuf JSON mapping, field names as in the .proto, indented.
std::string ToJson(const google::protobuf::Message& m);

// Statement rendered as a table or CSV.
std::string StatementTable(const v1::Statement& s);
std::string StatementCsv(const v1::Statement& s);
// One line per attempt: how its GPU-seconds were billed.
std::string AttemptBillingText(const v1::AttemptBilling& a);
// The finance export as RFC 4180 CSV: a `line` record per statement line
// and a `revenue` record per contract (ASC 606 ratable).
std::string ExportCsv(const v1::ExportPeriodResponse& e);

}  // namespace joule::cli
