// cli/output.h and cli/app_help.h: the -o formats, money grouping, the
// nearest command for a typo, bash completion.
#include "cli/output.h"

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "cli/app_help.h"
#include "cli/format.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {
namespace {

// Restores the process-wide format after each test.
class OutputTest : public ::testing::Test {
 protected:
  void TearDown() override { SetOutputFormat(OutputFormat::kTable); }
};

TEST_F(OutputTest, ParsesEveryFormatAndNamesTheFlag) {
  for (const char* f : {"table", "wide", "json", "yaml", "csv"}) {
    EXPECT_TRUE(ParseOutputFormat(f).ok()) << f;
  }
  auto bad = ParseOutputFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "-o: \"xml\""));
}

TEST_F(OutputTest, YamlKeepsOrderAndQuotesWhatYamlWouldMisread) {
  auto y = JsonToYaml(
      R"({"name": "n1", "cap_mw": "40000000", "ok": true, "n": 3,
          "empty": "", "word": "yes", "colon": "a: b", "list": [1, "x"],
          "objs": [{"a": 1, "b": {"c": "d"}}, {}], "none": [], "o": {},
          "nl": "two\nlines", "uni": "\u00e9"})");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(*y,
            "name: n1\n"
            "cap_mw: \"40000000\"\n"  // int64: a JSON string stays a string
            "ok: true\n"
            "\"n\": 3\n"  // a key YAML 1.1 reads as false
            "empty: \"\"\n"
            "word: \"yes\"\n"  // YAML 1.1 would read a bool
            "colon: \"a: b\"\n"
            "list:\n"
            "  - 1\n"
            "  - x\n"
            "objs:\n"
            "  - a: 1\n"
            "    b:\n"
            "      c: d\n"
            "  - {}\n"
            "none: []\n"
            "o: {}\n"
            "nl: \"two\\nlines\"\n"
            "uni: \"\xc3\xa9\"\n");
  EXPECT_FALSE(JsonToYaml("{\"a\": }").ok());
}

TEST_F(OutputTest, YamlOfAMessageIsItsJsonMapping) {
  v1::Event e;
  e.set_seq(7);
  e.set_kind("cap");
  e.set_subject("row-1");
  e.set_message("cap 17.0 kW: demand response");
  const std::string y = ToYaml(e);
  EXPECT_TRUE(absl::StrContains(y, "seq: \"7\"\n")) << y;  // uint64
  EXPECT_TRUE(absl::StrContains(y, "kind: cap\n")) << y;
  EXPECT_TRUE(
      absl::StrContains(y, "message: \"cap 17.0 kW: demand response\"\n"))
      << y;
}

TEST_F(OutputTest, CsvOfAListHasOneRecordPerElement) {
  v1::ListEventsResponse r;
  auto* a = r.add_events();
  a->set_seq(1);
  a->set_kind("job");
  a->set_message("a, \"quoted\"");
  r.add_events()->set_seq(2);
  const std::string csv = MessageCsv(r);
  EXPECT_EQ(csv,
            // (an unset Timestamp is not in the JSON mapping: no column)
            "seq,kind,subject,message\n"
            "1,job,,\"a, \"\"quoted\"\"\"\n"
            "2,,,\n");
}

TEST_F(OutputTest, TableFormats) {
  Table t({"ID", "AMOUNT", "EXTRA"});
  t.Money({"AMOUNT"});
  t.WideOnly({"EXTRA"});
  t.Add({"a", "1234567.50", "x"});
  t.Add({"bb", "-5.00", "y"});
  // table: EXTRA left out; money grouped and right-aligned.
  EXPECT_EQ(t.Render(),
            "ID        AMOUNT\n"
            "a   1,234,567.50\n"
            "bb         -5.00\n");
  SetOutputFormat(OutputFormat::kWide);
  EXPECT_EQ(t.Render(),
            "ID        AMOUNT  EXTRA\n"
            "a   1,234,567.50  x\n"
            "bb         -5.00  y\n");
  SetOutputFormat(OutputFormat::kCsv);  // every column, plain decimals
  EXPECT_EQ(t.Render(), "ID,AMOUNT,EXTRA\na,1234567.50,x\nbb,-5.00,y\n");
}

TEST_F(OutputTest, GroupsThousands) {
  struct Case {
    const char* in;
    const char* want;
  } cases[] = {
      {"0.00", "0.00"},        {"999.99", "999.99"},
      {"1000", "1,000"},       {"15390000.00", "15,390,000.00"},
      {"-1234.5", "-1,234.5"}, {"n/a", "n/a"},
      {"12a4", "12a4"},        {"", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(GroupThousands(c.in), c.want) << c.in;
  EXPECT_EQ(FormatCentsGrouped(1'539'000'012), "15,390,000.12");
}

TEST_F(OutputTest, ProtoNamesComeFromTheEnums) {
  EXPECT_EQ(JobStateName(v1::JOB_STATE_SUCCEEDED), "succeeded");
  EXPECT_EQ(ServiceClassName(v1::SERVICE_CLASS_ON_DEMAND), "on-demand");
  EXPECT_EQ(joule::ServiceClassName(v1::SERVICE_CLASS_UNSPECIFIED),
            "unspecified");
  EXPECT_EQ(*ParseServiceClass("ondemand"), v1::SERVICE_CLASS_ON_DEMAND);
  EXPECT_EQ(*ParseJobState("cancelled"), v1::JOB_STATE_CANCELLED);
  auto bad = ParseServiceClass("gold");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "--class: \"gold\" is not one of reserved, on-demand, spot");
}

CLI::App* Tree(CLI::App& app) {
  auto* node = app.add_subcommand("node", "nodes");
  node->add_subcommand("list", "")->add_flag("--watch");
  node->add_subcommand("show", "");
  auto* job = app.add_subcommand("job", "jobs");
  job->add_subcommand("list", "");
  job->add_subcommand("submit", "")->add_option("--gpus");
  app.add_subcommand("events", "");
  app.add_option("-o,--output");
  return &app;
}

TEST(AppHelpTest, NearestCommand) {
  CLI::App app;
  Tree(app);
  struct Case {
    std::vector<std::string> words;
    const char* want;
  } cases[] = {
      {{"nod", "lst"}, "node list"},  // 1 + 1 edits
      {{"node", "lst"}, "node list"},
      {{"job", "sumbit"}, "job submit"},
      {{"evnets"}, "events"},
      {{"nod"}, "node"},
      {{"billing"}, ""},  // nothing near
      {{}, ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(NearestCommand(app, c.words), c.want) << c.words.size();
  }
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(AppHelpTest, CommandWordsSkipOptionValues) {
  CLI::App app;
  Tree(app);
  const char* argv[] = {"joulectl", "-o", "json", "nod", "lst", "--", "x"};
  EXPECT_EQ(CommandWords(app, 7, const_cast<char**>(argv)),
            (std::vector<std::string>{"nod", "lst"}));
}

TEST(AppHelpTest, BashCompletionKnowsTheTree) {
  CLI::App app;
  Tree(app);
  const std::string s = BashCompletion(app);
  EXPECT_TRUE(
      absl::StrContains(s, "\"node list\") flags=\"--help -h --watch\""))
      << s;
  EXPECT_TRUE(absl::StrContains(s, "\"job\") verbs=\"list submit\"")) << s;
  EXPECT_TRUE(absl::StrContains(s, "compgen -W \"node job events\"")) << s;
  EXPECT_TRUE(absl::StrContains(s, "complete -F _joulectl joulectl")) << s;
}

}  // namespace
}  // namespace joule::cli
