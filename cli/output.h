#pragma once

// joulectl's output formats (`-o table|wide|json|yaml|csv`): one process-wide
// choice made once in main() before any command runs, read by Table::Render
// and by PrintStructured. Not thread-safe to change; read from any thread.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace joule::cli {

enum class OutputFormat { kTable, kWide, kJson, kYaml, kCsv };

// "table", "wide", "json", "yaml", "csv"; an error names `-o`.
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view s);
void SetOutputFormat(OutputFormat f);
OutputFormat CurrentOutputFormat();

// The protobuf JSON mapping of `m` (proto field names, every field) as
// YAML: the same keys in the same order, the same values (strings quoted
// where YAML would read them as something else, numbers as JSON wrote them:
// int64 stays a quoted string). Ends with a newline.
std::string ToYaml(const google::protobuf::Message& m);
// Any JSON text as YAML (used by ToYaml; exposed for tests).
absl::StatusOr<std::string> JsonToYaml(absl::string_view json);

// `m` as RFC 4180 CSV for commands that have no table: when `m` has exactly
// one repeated message field, one record per element; otherwise one record
// for `m`. Columns are the leaf paths of its JSON mapping (`spec.tenant`),
// repeated scalars joined with ';'. A header row first.
std::string MessageCsv(const google::protobuf::Message& m);

// Prints `m` on stdout in the current format when that is json or yaml (or
// csv, with `csv_too`: commands whose text output is not a Table), and
// returns true; false when the caller should print its table or text.
bool PrintStructured(const google::protobuf::Message& m, bool csv_too = false);

// "12,345,678.90" from "12345678.90" (or "-1234" -> "-1,234"); text that is
// not a plain decimal comes back unchanged.
std::string GroupThousands(absl::string_view decimal);

// Ends the process with `code` once stdout and stderr are flushed, without
// running destructors or atexit handlers: a finished joulectl call has
// nothing left to clean up, and tearing gRPC down (its threads, the channel,
// OpenSSL) took about a third of a short call's CPU. Output written through
// std::cout/std::cerr or C stdio is flushed first.
[[noreturn]] void ExitNow(int code);

}  // namespace joule::cli
