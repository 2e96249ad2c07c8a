#include "cli/csv.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_time.h"

namespace joule::cli {

int CsvReader::Get() {
  const int c = in_->get();
  if (c != EOF) ++bytes_;
  return c;
}

int CsvReader::Peek() { return in_->peek(); }

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>* fields) {
  fields->clear();
  if (!started_) {
    started_ = true;
    // A UTF-8 byte-order mark (EF BB BF) is not part of the first field.
    if (Peek() == 0xEF) {
      Get();
      if (Get() != 0xBB || Get() != 0xBF) {
        return absl::InvalidArgumentError(
            "line 1, column 1: invalid bytes at the start of the file");
      }
    }
  }
  if (Peek() == EOF) return false;
  record_line_ = line_;
  std::string field;
  int column = 1;
  bool quoted = false, after_quote = false;
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line_, ", column ", column, ": ", what));
  };
  while (true) {
    const int c = Get();
    if (quoted) {
      if (c == EOF) return error("quoted field is not closed");
      if (c == '"') {
        if (Peek() == '"') {
          Get();
          field.push_back('"');
        } else {
          quoted = false;
          after_quote = true;
        }
      } else {
        if (c == '\n') ++line_;
        field.push_back(static_cast<char>(c));
      }
      continue;
    }
    if (c == EOF || c == '\n' || (c == '\r' && Peek() == '\n') || c == ',') {
      if (c == '\r') Get();
      fields->push_back(std::move(field));
      field.clear();
      if (c == ',') {
        ++column;
        after_quote = false;
        continue;
      }
      if (c != EOF) ++line_;
      return true;
    }
    if (after_quote) return error("text after a closing quote");
    if (c == '"') {
      if (!field.empty()) return error("quote inside an unquoted field");
      quoted = true;
      continue;
    }
    field.push_back(static_cast<char>(c));
  }
}

absl::StatusOr<UsageColumns> ParseUsageHeader(
    const std::vector<std::string>& header) {
  UsageColumns c;
  c.width = header.size();
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string name =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(header[i]));
    int* slot = name == "timestamp"         ? &c.timestamp
                : name == "tenant"          ? &c.tenant
                : name == "model"           ? &c.model
                : name == "requests"        ? &c.requests
                : name == "input_tokens"    ? &c.input
                : name == "output_tokens"   ? &c.output
                : name == "idempotency_key" ? &c.key
                                            : nullptr;
    if (slot == nullptr) continue;  // extra columns are ignored
    if (*slot >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line 1, column ", i + 1, ": column \"", name, "\" appears twice"));
    }
    *slot = static_cast<int>(i);
  }
  std::vector<std::string> missing;
  auto need = [&](int slot, const char* name) {
    if (slot < 0) missing.push_back(name);
  };
  need(c.timestamp, "timestamp");
  need(c.tenant, "tenant");
  need(c.model, "model");
  need(c.input, "input_tokens");
  need(c.output, "output_tokens");
  need(c.key, "idempotency_key");
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing)
      absl::StrAppend(&list, list.empty() ? "" : ", ", m);
    return absl::InvalidArgumentError(
        absl::StrCat("line 1: header lacks column(s) ", list,
                     " (columns are matched by name; requests is optional)"));
  }
  return c;
}

absl::StatusOr<int64_t> ParseCount(absl::string_view text,
                                   absl::string_view what) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": is empty"));
  }
  if (text.size() > 19) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text, "\" is too large"));
  }
  int64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text,
                       "\" is not a count (decimal digits only, no sign)"));
    }
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, ch - '0', &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text, "\" is too large"));
    }
  }
  return v;
}

absl::StatusOr<v1::UsageEvent> ParseUsageRow(
    const std::vector<std::string>& fields, const UsageColumns& cols,
    int line) {
  auto at = [&](int col) -> std::string {
    return col >= 0 && col < static_cast<int>(fields.size())
               ? std::string(absl::StripAsciiWhitespace(fields[col]))
               : std::string();
  };
  auto err = [&](int col, absl::string_view name, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat(
        "line ", line, ", column ", col + 1, " (", name, "): ", rule));
  };
  if (fields.size() != cols.width) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, ": has ", fields.size(),
                     " columns; the header has ", cols.width));
  }
  v1::UsageEvent e;
  absl::Time t;
  std::string parse_error;
  const std::string ts = at(cols.timestamp);
  if (!absl::ParseTime(absl::RFC3339_full, ts, &t, &parse_error)) {
    return err(cols.timestamp, "timestamp",
               absl::StrCat("\"", ts,
                            "\" is not RFC 3339 (e.g. 2026-11-01T12:00:00Z)"));
  }
  *e.mutable_time() = ToProtoTime(t);
  e.set_tenant(at(cols.tenant));
  e.set_model(at(cols.model));
  e.set_idempotency_key(at(cols.key));
  struct Count {
    int col;
    const char* name;
    void (v1::UsageEvent::*set)(int64_t);
  };
  const Count counts[] = {
      {cols.requests, "requests", &v1::UsageEvent::set_requests},
      {cols.input, "input_tokens", &v1::UsageEvent::set_input_tokens},
      {cols.output, "output_tokens", &v1::UsageEvent::set_output_tokens}};
  e.set_requests(1);  // one request per row by default
  for (const Count& c : counts) {
    if (c.col < 0) continue;
    const std::string v = at(c.col);
    if (v.empty() && c.col == cols.requests) continue;
    absl::StatusOr<int64_t> n = ParseCount(v, "value");
    if (!n.ok()) {
      return err(c.col, c.name,
                 absl::StrCat("\"", v,
                              "\" is not a count (decimal digits only, no "
                              "sign)"));
    }
    (e.*c.set)(*n);
  }
  return e;
}

std::string CsvField(absl::string_view v) {
  if (v.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(v);
  }
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace joule::cli
