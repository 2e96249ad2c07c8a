#include "config/cluster_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace joule::config {
namespace {

constexpr char kGood[] = R"pb(
  gpu_model { name: "H100" tdp: "700W" min_power_limit: "200W" }
  node_model { name: "hgx" base_power: "2kW" }
  domain { name: "site" kind: "site" cap: "1MW" }
  domain { name: "hall1" parent: "site" kind: "hall" cap: "500kW" }
  domain { name: "row1" parent: "hall1" kind: "row" cap: "100kW" }
  domain { name: "rack1" parent: "row1" kind: "rack" cap: "40kW" }
  node { name: "n1" domain: "rack1" node_model: "hgx" }
  scheduler { admission: "measured" default_domain: "rack1" }
)pb";

// The site (1 MW) on line 1 and `line` on line 2 of "c.conf".
absl::StatusOr<ClusterConfig> ParseSiteWith(absl::string_view line) {
  return ParseClusterConfig(
      absl::StrCat("domain { name: \"site\" cap: \"1MW\" }\n", line, "\n"),
      "c.conf");
}

TEST(ClusterConfigTest, ParsesAGoodConfig) {
  auto cfg = ParseClusterConfig(kGood, "good.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->domains.size(), 4u);
  EXPECT_EQ(cfg->domains[0].name, "site");  // parents first
  EXPECT_EQ(cfg->FindDomain("rack1")->cap_mw, 40'000'000);
  EXPECT_EQ(cfg->FindNode("n1")->base_power_mw, 2'000'000);
  EXPECT_EQ(cfg->FindGpuModel("H100")->min_limit_mw, 200'000);
  EXPECT_EQ(cfg->scheduler.admission, AdmissionMode::kMeasured);
}

struct BadCase {
  const char* name;
  const char* text;
  const char* want;  // substring of the error: file:line: field: rule
};

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, NamesLineAndField) {
  auto cfg = ParseClusterConfig(GetParam().text, "c.conf");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cfg.status().message().find(GetParam().want), std::string::npos)
      << cfg.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Configs, BadConfigTest,
    ::testing::Values(
        BadCase{"Cycle",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "domain { name: \"a\" parent: \"b\" cap: \"1kW\" }\n"
                "domain { name: \"b\" parent: \"a\" cap: \"1kW\" }\n",
                "c.conf:2: domain[1].parent: \"a\" is on a cycle"},
        BadCase{"AllCycle",
                "domain { name: \"a\" parent: \"b\" cap: \"1kW\" }\n"
                "domain { name: \"b\" parent: \"a\" cap: \"1kW\" }\n",
                "has a cycle"},
        BadCase{
            "UnknownParent",
            "domain { name: \"site\" cap: \"1MW\" }\n"
            "domain {\n  name: \"r\"\n  parent: \"nope\"\n  cap: \"1kW\"\n}\n",
            "c.conf:4: domain[1].parent: \"nope\" is not a defined domain"},
        BadCase{"NegativeCap", "domain { name: \"site\" cap: \"-1kW\" }\n",
                "c.conf:1: domain[0].cap:"},
        BadCase{"MissingCap", "domain { name: \"site\" }\n",
                "domain[0].cap: is required"},
        BadCase{"TwoRoots",
                "domain { name: \"a\" cap: \"1kW\" }\ndomain { name: \"b\" "
                "cap: \"1kW\" }\n",
                "c.conf:2: domain[1].parent"},
        BadCase{"NodeOnInnerDomain",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "domain { name: \"r\" parent: \"site\" cap: \"1kW\" }\n"
                "node { name: \"n\" domain: \"site\" }\n",
                "c.conf:3: node[0].domain: \"site\" has child domains"},
        BadCase{"Syntax", "domain { name: \"site\" cap: 5 \n", "c.conf:1:"},
        BadCase{"UnknownField", "domian { name: \"x\" }\n", "c.conf:1:"},
        BadCase{"BadAdmission",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler {\n admission: \"greedy\"\n}\n",
                "c.conf:3: scheduler.admission: \"greedy\" is not one of"},
        // 60 mW is a typo for 60 MW: below 1 W no cap makes sense.
        BadCase{"CapBelowOneWatt",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "domain {\n  name: \"r\"\n  parent: \"site\"\n"
                "  cap: \"60mW\"\n}\n",
                "c.conf:5: domain[1].cap: \"60mW\" is below 1 W"},
        BadCase{"ChildAboveParent",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "domain { name: \"row\" parent: \"site\" cap: \"50kW\" }\n"
                "domain { name: \"r\" parent: \"row\" cap: \"60kW\" }\n",
                "c.conf:3: domain[2].cap: \"60kW\" of \"r\" is above the "
                "cap of its parent \"row\""},
        BadCase{"ClassFloorAboveOne",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { class_floors: \"spot=2\" }\n",
                "c.conf:2: scheduler.class_floors: \"spot=2\": the share "
                "must be in [0, 1]"},
        BadCase{"ClassFloorUnknownClass",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { class_floors: \"gold=0.5\" }\n",
                "scheduler.class_floors: \"gold\" is not reserved, "
                "on-demand or spot"},
        BadCase{"UnknownPowerFit",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { power_fit: \"best\" }\n",
                "c.conf:2: scheduler.power_fit: \"best\" is not one of"},
        BadCase{"EfficiencyKneeNotAShare",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { efficiency_knee: \"50%\" }\n",
                "scheduler.efficiency_knee: \"50%\" is not a share in "
                "[0, 1]"},
        BadCase{"UnknownPlusCommit",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { plus_commit: \"p95\" }\n",
                "c.conf:2: scheduler.plus_commit: \"p95\" is not one of: "
                "percentile, floor-clamp"},
        BadCase{"StartingTimeoutTooShort",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { starting_timeout: \"10ms\" }\n",
                "c.conf:2: scheduler.starting_timeout: must be at least 1s"},
        BadCase{"MaxPreemptGraceTooLong",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { max_preempt_grace: \"25h\" }\n",
                "c.conf:2: scheduler.max_preempt_grace: must be at most 24h"},
        BadCase{"MaxPreemptGraceNegative",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { max_preempt_grace: \"-1s\" }\n",
                "c.conf:2: scheduler.max_preempt_grace: "},
        // A duration's error names its field once (not "stop_grace:
        // stop_grace: ...").
        BadCase{"DurationNotADuration",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { stop_grace: \"5\" }\n",
                "c.conf:2: scheduler.stop_grace: \"5\" is not a duration; "
                "want e.g. 90s, 5m, 1h30m"},
        BadCase{"DurationNegative",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "scheduler { unreachable_requeue_after: \"-1s\" }\n",
                "c.conf:2: scheduler.unreachable_requeue_after: \"-1s\" must "
                "not be negative"},
        BadCase{"RetentionNotADuration",
                "domain { name: \"site\" cap: \"1MW\" }\n"
                "retention { events: \"x\" }\n",
                "c.conf:2: retention.events: \"x\" is not a duration"}),
    [](const auto& info) { return info.param.name; });

TEST(ClusterConfigTest, PowerOptions) {
  // Defaults: spot at the GPU minimum, on-demand 80 %, reserved its limit;
  // leaf placement; knee 0.5.
  auto def = ParseClusterConfig(kGood, "good.conf");
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_TRUE(def->scheduler.class_floors.enabled);
  EXPECT_EQ(def->scheduler.class_floors.reserved_permille, 1000);
  EXPECT_EQ(def->scheduler.class_floors.on_demand_permille, 800);
  EXPECT_EQ(def->scheduler.class_floors.spot_permille, 0);
  EXPECT_EQ(def->scheduler.power_fit, scheduler::PowerFit::kLeaf);
  EXPECT_EQ(def->scheduler.efficiency_knee_permille, 500);
  EXPECT_EQ(def->scheduler.max_preempt_grace, absl::Seconds(300));
  EXPECT_EQ(def->scheduler.plus_commit.kind,
            scheduler::MeasuredCommitRule::kPercentile);
  EXPECT_EQ(def->scheduler.plus_commit.percentile, 50u);
  // Named classes change; the others keep the default.
  auto cfg = ParseSiteWith(
      "scheduler { class_floors: \"on-demand=0.6,spot=0.25\" power_fit: "
      "\"every-level\" efficiency_knee: \"0.6\" }");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->scheduler.class_floors.reserved_permille, 1000);
  EXPECT_EQ(cfg->scheduler.class_floors.on_demand_permille, 600);
  EXPECT_EQ(cfg->scheduler.class_floors.spot_permille, 250);
  EXPECT_EQ(cfg->scheduler.power_fit, scheduler::PowerFit::kEveryLevel);
  EXPECT_EQ(cfg->scheduler.efficiency_knee_permille, 600);
  // A start floor below the on-demand floor (ClassStartFloorMw).
  auto start =
      ParseSiteWith("scheduler { class_floors: \"on-demand-start=0.6\" }");
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->scheduler.class_floors.on_demand_permille, 800);
  EXPECT_EQ(start->scheduler.class_floors.on_demand_start_permille, 600);
  EXPECT_EQ(def->scheduler.class_floors.on_demand_start_permille, 1000);
  auto off = ParseSiteWith("scheduler { class_floors: \"off\" }");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->scheduler.class_floors.enabled);
  // The floor clamp: the very rule joule-sim's --plus-commit floor-clamp
  // uses (scheduler::FloorClampRule: p50 low, p95 high, no margin).
  auto clamp = ParseSiteWith("scheduler { plus_commit: \"floor-clamp\" }");
  ASSERT_TRUE(clamp.ok()) << clamp.status();
  const scheduler::MeasuredCommitRule want = scheduler::FloorClampRule();
  EXPECT_EQ(clamp->scheduler.plus_commit.kind, want.kind);
  EXPECT_EQ(clamp->scheduler.plus_commit.percentile, want.percentile);
  EXPECT_EQ(clamp->scheduler.plus_commit.high_percentile, want.high_percentile);
  EXPECT_EQ(clamp->scheduler.plus_commit.margin_pct, want.margin_pct);
}

TEST(ClusterConfigTest, Retention) {
  // Defaults: jobs 90 days (2160h), events 35 days (840h).
  auto def = ParseClusterConfig(kGood, "good.conf");
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->finished_job_retention, absl::Hours(2160));
  EXPECT_EQ(def->event_retention, absl::Hours(840));
  auto cfg =
      ParseSiteWith("retention { finished_jobs: \"0s\" events: \"1h\" }");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->finished_job_retention, absl::ZeroDuration());  // forever
  EXPECT_EQ(cfg->event_retention, absl::Hours(1));
  auto bad = ParseSiteWith("retention { events: \"30m\" }");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "c.conf:2: retention.events: must be 0s (keep forever) or at "
            "least 1h");
}

TEST(ClusterConfigTest, DefaultIsValid) {
  ClusterConfig cfg = DefaultClusterConfig();
  EXPECT_EQ(cfg.domains.size(), 1u);
  EXPECT_NE(cfg.FindGpuModel("H100"), nullptr);
}

}  // namespace
}  // namespace joule::config
