// RFC 4180 reading of usage CSVs (joulectl usage import).
#include "cli/csv.h"

#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::vector<std::string>> ReadAll(const std::string& text,
                                              absl::Status* error = nullptr) {
  std::istringstream in(text);
  CsvReader r(&in);
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> f;
  while (true) {
    absl::StatusOr<bool> got = r.Next(&f);
    if (!got.ok()) {
      if (error != nullptr) *error = got.status();
      break;
    }
    if (!*got) break;
    out.push_back(f);
  }
  return out;
}

TEST(CsvReaderTest, QuotesEscapedQuotesCrlfAndBom) {
  auto rows = ReadAll(
      "\xEF\xBB\xBFtimestamp,key\r\n"
      "\"2026-11-01T00:00:00Z\",\"a,b\"\r\n"
      "x,\"say \"\"hi\"\"\"\n"
      "y,\"two\nlines\"\n"
      "z,");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_THAT(rows[0], ElementsAre("timestamp", "key"));  // BOM dropped
  EXPECT_THAT(rows[1], ElementsAre("2026-11-01T00:00:00Z", "a,b"));
  EXPECT_THAT(rows[2], ElementsAre("x", "say \"hi\""));
  EXPECT_THAT(rows[3], ElementsAre("y", "two\nlines"));
  EXPECT_THAT(rows[4], ElementsAre("z", ""));
}

struct BadCase {
  std::string name, text, error;
};
class CsvBadTest : public ::testing::TestWithParam<BadCase> {};
TEST_P(CsvBadTest, ErrorsNameLineAndColumn) {
  absl::Status error;
  ReadAll(GetParam().text, &error);
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr(GetParam().error));
}
INSTANTIATE_TEST_SUITE_P(
    Cases, CsvBadTest,
    ::testing::Values(
        BadCase{"Unclosed", "a,b\nc,\"open", "line 2, column 2: quoted field"},
        BadCase{"QuoteInside", "a,b\nc,d\"e\n", "line 2, column 2: quote"},
        BadCase{"AfterQuote", "a\n\"x\"y\n", "line 2, column 1: text after"}),
    [](const auto& info) { return info.param.name; });

TEST(UsageCsvTest, ColumnsByHeaderNameInAnyOrder) {
  absl::StatusOr<UsageColumns> cols =
      ParseUsageHeader({"idempotency_key", "Output_Tokens", "extra",
                        "input_tokens", "model", "tenant", " timestamp "});
  ASSERT_TRUE(cols.ok()) << cols.status();
  absl::StatusOr<v1::UsageEvent> e = ParseUsageRow(
      {"k1", "20", "ignored", "10", "llama", "acme", "2026-11-01T00:00:00Z"},
      *cols, 2);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->idempotency_key(), "k1");
  EXPECT_EQ(e->input_tokens(), 10);
  EXPECT_EQ(e->output_tokens(), 20);
  EXPECT_EQ(e->requests(), 1);  // no requests column: one per row
  EXPECT_EQ(e->tenant(), "acme");
}

TEST(UsageCsvTest, MissingColumnsAreListed) {
  absl::StatusOr<UsageColumns> cols =
      ParseUsageHeader({"timestamp", "tenant", "model"});
  ASSERT_FALSE(cols.ok());
  EXPECT_THAT(cols.status().message(),
              HasSubstr("input_tokens, output_tokens, idempotency_key"));
}

TEST(UsageCsvTest, SignedCountsAreRefusedWithLineAndColumn) {
  absl::StatusOr<UsageColumns> cols =
      ParseUsageHeader({"timestamp", "tenant", "model", "requests",
                        "input_tokens", "output_tokens", "idempotency_key"});
  ASSERT_TRUE(cols.ok());
  for (const char* bad : {"+7", "-1", "1e3", "7 "}) {
    absl::StatusOr<v1::UsageEvent> e = ParseUsageRow(
        {"2026-11-01T00:00:00Z", "acme", "m", "1", bad, "0", "k"}, *cols, 9);
    if (std::string(bad) == "7 ") {
      EXPECT_TRUE(e.ok());  // surrounding spaces are trimmed
      continue;
    }
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_THAT(e.status().message(),
                HasSubstr("line 9, column 5 (input_tokens)"));
  }
  EXPECT_FALSE(ParseCount("+7", "--input-tokens").ok());
  EXPECT_EQ(*ParseCount("007", "x"), 7);
}

TEST(UsageCsvTest, CsvFieldQuotesWhenNeeded) {
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
}

}  // namespace
}  // namespace joule::cli
