// joule-sim --svg: the title fits the frame, metric names never share a
// line with their neighbours, revenue is in dollars.
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/report.h"
#include "sim/simulator.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(SvgTest, TitleFitsRevenueInDollarsNamesOnTwoLines) {
  RunInfo info;
  info.nodes = 10000;
  info.gpus = 80000;
  info.workload_source = std::string(300, 'w') + "/pod_list.csv";
  std::vector<SimResult> results(2);
  results[0].policy = "oblivious";
  results[1].policy = "measured-plus";
  results[0].revenue_total_cents = 1'539'000'000;  // $15,390,000
  results[1].revenue_total_cents = 1'200'000'049;  // $12,000,000 (rounded)
  const std::string svg = ReportSvg(info, results);
  EXPECT_THAT(svg, HasSubstr(">$15,390,000<"));
  EXPECT_THAT(svg, HasSubstr(">$12,000,000<"));
  EXPECT_THAT(svg, Not(HasSubstr("1.539e+09")));
  EXPECT_THAT(svg, HasSubstr("revenue<tspan"));  // "revenue" / "(USD)"
  EXPECT_THAT(svg, HasSubstr("site W·s<tspan"));
  // The title: cut in the middle to at most (900 - 20) / 8 = 110 chars.
  const size_t start = svg.find("joule-sim: ");
  ASSERT_NE(start, std::string::npos);
  const size_t end = svg.find("</text>", start);
  const std::string title = svg.substr(start, end - start);
  EXPECT_THAT(title, HasSubstr("\u2026"));
  EXPECT_THAT(title, HasSubstr("pod_list.csv (10000 nodes, 80000 GPUs)"));
  // UTF-8 "…" is 3 bytes, counted as one character on screen.
  EXPECT_LE(title.size() - 2, 110u) << title;
}

}  // namespace
}  // namespace joule::sim
