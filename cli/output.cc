#include "cli/output.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/csv.h"
#include "cli/format.h"
#include "google/protobuf/descriptor.h"

namespace joule::cli {
namespace {

std::atomic<OutputFormat> g_format{OutputFormat::kTable};

// A parsed JSON value; objects keep their key order.
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  std::string text;  // number as written, string decoded, "true"/"false"
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;
};

class JsonParser {
 public:
  explicit JsonParser(absl::string_view s) : s_(s) {}
  absl::StatusOr<Json> Parse() {
    Json v;
    if (!Value(&v)) return Error();
    Space();
    if (p_ != s_.size()) return Error();
    return v;
  }

 private:
  absl::Status Error() const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON: unexpected input at offset ", p_));
  }
  void Space() {
    while (p_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[p_])))
      ++p_;
  }
  bool Eat(char c) {
    Space();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Word(absl::string_view w) {
    if (s_.substr(p_, w.size()) != w) return false;
    p_ += w.size();
    return true;
  }
  static void Utf8(uint32_t c, std::string* out) {
    if (c < 0x80) {
      out->push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (c >> 6)));
      out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (c >> 12)));
      out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (c >> 18)));
      out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  bool Hex4(uint32_t* c) {
    if (p_ + 4 > s_.size()) return false;
    *c = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[p_++];
      *c <<= 4;
      if (h >= '0' && h <= '9')
        *c |= h - '0';
      else if (h >= 'a' && h <= 'f')
        *c |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        *c |= h - 'A' + 10;
      else
        return false;
    }
    return true;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (p_ < s_.size()) {
      const char c = s_[p_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ >= s_.size()) return false;
      const char e = s_[p_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t c1 = 0;
          if (!Hex4(&c1)) return false;
          if (c1 >= 0xD800 && c1 < 0xDC00 && Word("\\u")) {
            uint32_t c2 = 0;
            if (!Hex4(&c2)) return false;
            c1 = 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00);
          }
          Utf8(c1, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Value(Json* v) {
    Space();
    if (p_ >= s_.size()) return false;
    const char c = s_[p_];
    if (c == '{') {
      ++p_;
      v->kind = Json::kObject;
      if (Eat('}')) return true;
      do {
        std::string key;
        Json item;
        if (!String(&key) || !Eat(':') || !Value(&item)) return false;
        v->fields.emplace_back(std::move(key), std::move(item));
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      ++p_;
      v->kind = Json::kArray;
      if (Eat(']')) return true;
      do {
        Json item;
        if (!Value(&item)) return false;
        v->items.push_back(std::move(item));
      } while (Eat(','));
      return Eat(']');
    }
    if (c == '"') {
      v->kind = Json::kString;
      return String(&v->text);
    }
    for (const char* word : {"true", "false"}) {
      if (Word(word)) {
        v->kind = Json::kBool;
        v->text = word;
        return true;
      }
    }
    if (Word("null")) return true;
    const size_t start = p_;
    while (p_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[p_])) || s_[p_] == '-' ||
            s_[p_] == '+' || s_[p_] == '.' || s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
    }
    if (p_ == start) return false;
    v->kind = Json::kNumber;
    v->text = std::string(s_.substr(start, p_ - start));
    return true;
  }

  absl::string_view s_;
  size_t p_ = 0;
};

// A string YAML reads back as the same string without quotes.
bool PlainYaml(const std::string& s) {
  if (s.empty()) return false;
  const unsigned char first = s[0];
  if (!std::isalpha(first) && first != '_' && first != '/') return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '_' && c != '-' && c != '.' && c != '/' &&
        c != '@' && c != '+') {
      return false;
    }
  }
  static const char* kReserved[] = {"true", "false", "yes", "no", "on",
                                    "off",  "null",  "y",   "n"};
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* r : kReserved) {
    if (lower == r) return false;
  }
  return true;
}

std::string QuoteYaml(const std::string& s) {
  if (PlainYaml(s)) return s;
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

std::string Scalar(const Json& v) {
  switch (v.kind) {
    case Json::kNull:
      return "null";
    case Json::kString:
      return QuoteYaml(v.text);
    default:
      return v.text;
  }
}

void EmitObject(const Json& v, int indent, std::string* out);
void EmitArray(const Json& v, int indent, std::string* out);

// What follows "key:" or "-": " scalar\n", or a nested block.
void EmitAfter(const Json& v, int indent, std::string* out) {
  if (v.kind == Json::kObject && !v.fields.empty()) {
    out->push_back('\n');
    EmitObject(v, indent + 2, out);
  } else if (v.kind == Json::kArray && !v.items.empty()) {
    out->push_back('\n');
    EmitArray(v, indent + 2, out);
  } else if (v.kind == Json::kObject) {
    *out += " {}\n";
  } else if (v.kind == Json::kArray) {
    *out += " []\n";
  } else {
    absl::StrAppend(out, " ", Scalar(v), "\n");
  }
}

void EmitObject(const Json& v, int indent, std::string* out) {
  for (const auto& [k, item] : v.fields) {
    absl::StrAppend(out, std::string(indent, ' '), QuoteYaml(k), ":");
    EmitAfter(item, indent, out);
  }
}

void EmitArray(const Json& v, int indent, std::string* out) {
  for (const Json& item : v.items) {
    if (item.kind == Json::kObject && !item.fields.empty()) {
      // "- first: 1\n  second: 2": the block at indent + 2, its first
      // indentation replaced by the dash.
      std::string block;
      EmitObject(item, indent + 2, &block);
      block.replace(indent, 2, "- ");
      *out += block;
    } else {
      *out += std::string(indent, ' ') + "-";
      EmitAfter(item, indent, out);
    }
  }
}

std::string CompactJson(const Json& v) {
  switch (v.kind) {
    case Json::kObject: {
      std::vector<std::string> parts;
      for (const auto& [k, x] : v.fields) {
        parts.push_back(absl::StrCat(QuoteYaml(k), ":", CompactJson(x)));
      }
      return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
    }
    case Json::kArray: {
      std::vector<std::string> parts;
      for (const Json& x : v.items) parts.push_back(CompactJson(x));
      return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
    }
    default:
      return Scalar(v);
  }
}

// Leaf path -> cell text of one CSV record.
void Flatten(const Json& v, const std::string& path,
             std::vector<std::pair<std::string, std::string>>* out) {
  if (v.kind == Json::kObject && !v.fields.empty()) {
    for (const auto& [k, x] : v.fields) {
      Flatten(x, path.empty() ? k : path + "." + k, out);
    }
    return;
  }
  std::string cell;
  if (v.kind == Json::kArray) {
    std::vector<std::string> parts;
    for (const Json& x : v.items) {
      parts.push_back(x.kind == Json::kString ? x.text
                      : x.kind == Json::kObject || x.kind == Json::kArray
                          ? CompactJson(x)
                          : x.text);
    }
    cell = absl::StrJoin(parts, ";");
  } else if (v.kind == Json::kObject) {
    cell = "";
  } else if (v.kind != Json::kNull) {
    cell = v.text;
  }
  out->emplace_back(path, std::move(cell));
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view s) {
  if (s == "table") return OutputFormat::kTable;
  if (s == "wide") return OutputFormat::kWide;
  if (s == "json") return OutputFormat::kJson;
  if (s == "yaml") return OutputFormat::kYaml;
  if (s == "csv") return OutputFormat::kCsv;
  return absl::InvalidArgumentError(absl::StrCat(
      "-o: \"", s, "\" is not one of table, wide, json, yaml, csv"));
}

void SetOutputFormat(OutputFormat f) { g_format.store(f); }
OutputFormat CurrentOutputFormat() { return g_format.load(); }

absl::StatusOr<std::string> JsonToYaml(absl::string_view json) {
  absl::StatusOr<Json> v = JsonParser(json).Parse();
  if (!v.ok()) return v.status();
  std::string out;
  if (v->kind == Json::kObject && !v->fields.empty()) {
    EmitObject(*v, 0, &out);
  } else if (v->kind == Json::kArray && !v->items.empty()) {
    EmitArray(*v, 0, &out);
  } else {
    out = (v->kind == Json::kObject  ? std::string("{}")
           : v->kind == Json::kArray ? std::string("[]")
                                     : Scalar(*v)) +
          "\n";
  }
  return out;
}

std::string ToYaml(const google::protobuf::Message& m) {
  absl::StatusOr<std::string> y = JsonToYaml(ToJson(m));
  return y.ok() ? *y : "{}\n";
}

std::string MessageCsv(const google::protobuf::Message& m) {
  absl::StatusOr<Json> root = JsonParser(ToJson(m)).Parse();
  if (!root.ok()) return "";
  // One repeated message field (a list response): one record per element.
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::FieldDescriptor* list = nullptr;
  int lists = 0;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->is_repeated() && !f->is_map() &&
        f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      list = f;
      ++lists;
    }
  }
  std::vector<const Json*> records;
  if (lists == 1) {
    for (const auto& [k, v] : root->fields) {
      if (k == list->name()) {
        for (const Json& x : v.items) records.push_back(&x);
      }
    }
  } else {
    records.push_back(&*root);
  }
  std::vector<std::string> columns;
  std::vector<std::vector<std::pair<std::string, std::string>>> rows;
  for (const Json* r : records) {
    rows.emplace_back();
    Flatten(*r, "", &rows.back());
    for (const auto& [path, cell] : rows.back()) {
      if (std::find(columns.begin(), columns.end(), path) == columns.end()) {
        columns.push_back(path);
      }
    }
  }
  std::string out;
  std::vector<std::string> cells;
  for (const auto& c : columns) cells.push_back(CsvField(c));
  absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  for (const auto& row : rows) {
    cells.assign(columns.size(), "");
    for (const auto& [path, cell] : row) {
      const size_t i =
          std::find(columns.begin(), columns.end(), path) - columns.begin();
      cells[i] = CsvField(cell);
    }
    absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  }
  return out;
}

bool PrintStructured(const google::protobuf::Message& m, bool csv_too) {
  std::string text;
  switch (CurrentOutputFormat()) {
    case OutputFormat::kJson:
      text = ToJson(m) + "\n";
      break;
    case OutputFormat::kYaml:
      text = ToYaml(m);
      break;
    case OutputFormat::kCsv:
      if (!csv_too) return false;
      text = MessageCsv(m);
      break;
    default:
      return false;
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  return true;
}

std::string GroupThousands(absl::string_view decimal) {
  absl::string_view s = decimal;
  std::string sign;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    sign = std::string(1, s[0]);
    s.remove_prefix(1);
  }
  const size_t dot = s.find('.');
  absl::string_view whole = s.substr(0, dot);
  absl::string_view frac =
      dot == absl::string_view::npos ? absl::string_view() : s.substr(dot);
  if (whole.empty()) return std::string(decimal);
  for (char c : whole) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return std::string(decimal);
    }
  }
  for (size_t i = 1; i < frac.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(frac[i]))) {
      return std::string(decimal);
    }
  }
  std::string grouped;
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i > 0 && (whole.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(whole[i]);
  }
  return absl::StrCat(sign, grouped, frac);
}

void ExitNow(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  ::_exit(code);
}

}  // namespace joule::cli
