#include "cli/format.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "billing/money.h"
#include "cli/csv.h"
#include "cli/output.h"
#include "common/proto_names.h"
#include "common/proto_time.h"
#include "google/protobuf/util/json_util.h"

namespace joule::cli {

std::string Table::Render() const {
  const OutputFormat format = CurrentOutputFormat();
  auto listed = [](const std::vector<std::string>& set, const std::string& h) {
    return std::find(set.begin(), set.end(), h) != set.end();
  };
  if (format == OutputFormat::kCsv) {
    std::string out;
    auto record = [&](const std::vector<std::string>& row) {
      for (size_t i = 0; i < row.size(); ++i) {
        absl::StrAppend(&out, i > 0 ? "," : "", CsvField(row[i]));
      }
      out += "\n";
    };
    record(header_);
    for (const auto& r : rows_) record(r);
    return out;
  }
  // Which columns show, and the money ones grouped and right-aligned.
  std::vector<size_t> shown;
  std::vector<bool> right;
  for (size_t i = 0; i < header_.size(); ++i) {
    if (format != OutputFormat::kWide && listed(wide_only_, header_[i])) {
      continue;
    }
    shown.push_back(i);
    right.push_back(listed(money_, header_[i]));
  }
  auto pick = [&](const std::vector<std::string>& row, bool is_header) {
    std::vector<std::string> out;
    for (size_t k = 0; k < shown.size(); ++k) {
      std::string cell = shown[k] < row.size() ? row[shown[k]] : "";
      if (right[k] && !is_header) cell = GroupThousands(cell);
      out.push_back(std::move(cell));
    }
    return out;
  };
  std::vector<std::vector<std::string>> cells;
  cells.push_back(pick(header_, true));
  for (const auto& r : rows_) cells.push_back(pick(r, false));
  return RenderAligned(cells, right);
}

std::string Table::RenderAligned(
    const std::vector<std::vector<std::string>>& cells,
    const std::vector<bool>& right) {
  std::vector<size_t> width(cells[0].size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  for (const auto& r : cells) measure(r);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      if (right[i]) line += pad;
      line += row[i];
      if (i + 1 < row.size()) line += (right[i] ? "" : pad) + "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  for (const auto& r : cells) emit(r);
  return out;
}

// Money is formatted in one place: billing/money.cc.
std::string FormatCents(int64_t cents) { return billing::FormatCents(cents); }
std::string FormatCentsGrouped(int64_t cents) {
  return GroupThousands(FormatCents(cents));
}

// The names live in common/proto_names.h; tables show "-" for unset.
absl::StatusOr<v1::ServiceClass> ParseServiceClass(absl::string_view s) {
  return ParseServiceClassName(s, "--class");
}

std::string ServiceClassName(v1::ServiceClass c) {
  if (c == v1::SERVICE_CLASS_UNSPECIFIED) return "-";
  return joule::ServiceClassName(c);
}

std::string JobStateName(v1::JobState s) {
  if (s == v1::JOB_STATE_UNSPECIFIED) return "-";
  return joule::JobStateName(s);
}

absl::StatusOr<v1::JobState> ParseJobState(absl::string_view s) {
  return ParseJobStateName(s, "--state");
}

absl::StatusOr<v1::UsageEvent> ParseUsageCsvLine(absl::string_view line,
                                                 int line_number) {
  std::vector<std::string> cols = absl::StrSplit(line, ',');
  auto err = [&](absl::string_view col, absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line_number, ": ", col, ": ", rule));
  };
  if (cols.size() != 7) {
    return err("row", absl::StrCat("has ", cols.size(), " columns; want 7 (",
                                   kUsageCsvHeader, ")"));
  }
  for (auto& c : cols) c = std::string(absl::StripAsciiWhitespace(c));
  v1::UsageEvent e;
  absl::Time t;
  std::string parse_error;
  if (!absl::ParseTime(absl::RFC3339_full, cols[0], &t, &parse_error)) {
    return err("timestamp", absl::StrCat("\"", cols[0],
                                         "\" is not RFC 3339 (e.g. "
                                         "2026-11-01T12:00:00Z)"));
  }
  *e.mutable_time() = ToProtoTime(t);
  e.set_tenant(cols[1]);
  e.set_model(cols[2]);
  const char* names[] = {"requests", "input_tokens", "output_tokens"};
  int64_t values[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    const std::string& c = cols[3 + i];
    if (c.empty() && i == 0) {
      values[i] = 1;  // one request per row by default
      continue;
    }
    if (!absl::SimpleAtoi(c, &values[i])) {
      return err(names[i], absl::StrCat("\"", c, "\" is not an integer"));
    }
  }
  e.set_requests(values[0]);
  e.set_input_tokens(values[1]);
  e.set_output_tokens(values[2]);
  e.set_idempotency_key(cols[6]);
  return e;
}

int EventIndexInMessage(absl::string_view message) {
  size_t p = message.find("events[");
  if (p == absl::string_view::npos) return -1;
  p += 7;
  size_t q = message.find(']', p);
  int idx = -1;
  if (q == absl::string_view::npos ||
      !absl::SimpleAtoi(message.substr(p, q - p), &idx)) {
    return -1;
  }
  return idx;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string StatementTable(const v1::Statement& s) {
  std::string out = absl::StrCat(
      "Statement ", s.number().empty() ? "(open, not final)" : s.number(),
      "  tenant ", s.tenant(), "  period ", s.period(), "  currency USD\n\n");
  Table t({"PRICING", "ITEM", "DETAIL", "ADJUSTS", "QUANTITY", "UNIT",
           "UNIT PRICE", "CARD", "AMOUNT"});
  t.Money({"UNIT PRICE", "AMOUNT"});
  for (const auto& l : s.lines()) {
    t.Add({l.pricing_model(), l.item(), l.detail(),
           l.adjustment_for().empty() ? "" : l.adjustment_for(), l.quantity(),
           l.unit(), l.unit_price(), l.rate_card(),
           l.informational() ? "(info)" : FormatCents(l.amount_cents())});
  }
  out += t.Render();
  out += "\n";
  std::vector<std::pair<std::string, int64_t>> subs(s.subtotal_cents().begin(),
                                                    s.subtotal_cents().end());
  std::sort(subs.begin(), subs.end());
  for (const auto& [k, v] : subs) {
    absl::StrAppend(&out, "subtotal ", k, ": ", FormatCentsGrouped(v), "\n");
  }
  absl::StrAppend(&out, "TOTAL USD ", FormatCentsGrouped(s.total_cents()),
                  "\n");
  if (s.credits_applied_cents() != 0 || s.credit_balance_cents() != 0) {
    absl::StrAppend(&out, "prepaid credits applied: -",
                    FormatCentsGrouped(s.credits_applied_cents()), "\n");
  }
  // Statements stored before prepaid credits existed have no amount due.
  const int64_t due =
      s.amount_due_cents() == 0 && s.credits_applied_cents() == 0
          ? s.total_cents()
          : s.amount_due_cents();
  absl::StrAppend(&out, "AMOUNT DUE USD ", FormatCentsGrouped(due),
                  "   (prepaid credit balance ",
                  FormatCentsGrouped(s.credit_balance_cents()), ")\n");
  if (!s.attempts().empty()) {
    out += "\nJob attempts (how their GPU-seconds were billed):\n";
    for (const auto& a : s.attempts()) out += AttemptBillingText(a);
  }
  return out;
}

std::string AttemptBillingText(const v1::AttemptBilling& a) {
  return absl::StrCat("  ", a.job_id(), " attempt ", a.attempt(), " (",
                      a.period(), "): ", a.gpus(), " ", a.gpu_model(),
                      " GPUs, ", a.gpu_seconds(), " GPU-s as ",
                      ServiceClassName(a.service_class()), ": ", a.how(),
                      a.in_progress() ? " (in progress, to now)" : "", "\n");
}

std::string ExportCsv(const v1::ExportPeriodResponse& e) {
  std::string out =
      "record,period,tenant,statement_number,pricing_model,item,detail,"
      "adjustment_for,quantity,unit,unit_price,rate_card,amount,contract_id\n";
  for (const auto& x : e.lines()) {
    const auto& l = x.line();
    absl::StrAppend(
        &out, "line,", x.period(), ",", CsvField(x.tenant()), ",",
        x.statement_number(), ",", CsvField(l.pricing_model()), ",",
        CsvField(l.item()), ",", CsvField(l.detail()), ",", l.adjustment_for(),
        ",", l.quantity(), ",", CsvField(l.unit()), ",", l.unit_price(), ",",
        CsvField(l.rate_card()), ",", FormatCents(l.amount_cents()), ",\n");
  }
  for (const auto& r : e.revenue()) {
    absl::StrAppend(
        &out, "revenue,", e.period(), ",", CsvField(r.tenant()), ",,reserved,",
        CsvField(r.gpu_model()), ",ASC 606 ratable recognition,,,,,contract,",
        FormatCents(r.recognized_cents()), ",", r.contract_id(), "\n");
  }
  return out;
}

std::string StatementCsv(const v1::Statement& s) {
  const auto q = [](const std::string& v) { return CsvField(v); };
  std::string out =
      "tenant,period,pricing_model,item,detail,adjustment_for,quantity,unit,"
      "unit_price,amount,informational,rate_card\n";
  for (const auto& l : s.lines()) {
    absl::StrAppend(
        &out, q(s.tenant()), ",", s.period(), ",", q(l.pricing_model()), ",",
        q(l.item()), ",", q(l.detail()), ",", l.adjustment_for(), ",",
        l.quantity(), ",", q(l.unit()), ",", l.unit_price(), ",",
        FormatCents(l.amount_cents()), ",",
        l.informational() ? "true" : "false", ",", q(l.rate_card()), "\n");
  }
  absl::StrAppend(&out, q(s.tenant()), ",", s.period(), ",total,,,,,,,",
                  FormatCents(s.total_cents()), ",false,\n");
  return out;
}

}  // namespace joule::cli
