// daemon/config_reload.h: what a reload applies, and what needs a restart.
#include "daemon/config_reload.h"

#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

config::ClusterConfig Parse(const std::string& rack_cap,
                            const std::string& extra = "") {
  auto c = config::ParseClusterConfig(
      "domain { name: \"site\" kind: \"site\" cap: \"1MW\" }\n"
      "domain { name: \"rk1\" parent: \"site\" kind: \"rack\" cap: \"" +
          rack_cap +
          "\" }\n"
          "node { name: \"n1\" domain: \"rk1\" }\n"
          "tenant { name: \"acme\" }\n" +
          extra,
      "test.conf");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(DiffConfig, CapChangesInMilliwatts) {
  // 11 kW -> 12 kW: one change, in mW.
  auto plan = DiffConfig(Parse("11kW"), Parse("12kW"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->caps.size(), 1u);
  EXPECT_EQ(plan->caps[0].domain, "rk1");
  EXPECT_EQ(plan->caps[0].old_mw, 11'000'000);
  EXPECT_EQ(plan->caps[0].new_mw, 12'000'000);
  EXPECT_TRUE(plan->settings.empty());
  EXPECT_TRUE(DiffConfig(Parse("11kW"), Parse("11kW"))->empty());
}

// Each reloadable setting: the change it reports, and the value installed.
TEST(DiffConfig, RunTimeSettingsAreAppliedAndNamed) {
  struct Case {
    std::string extra;
    std::string change;  // SettingChange::Text()
  } const cases[] = {
      {"scheduler { stop_grace: \"2s\" }", "scheduler.stop_grace 5s -> 2s"},
      {"scheduler { max_preempt_grace: \"60s\" }",
       "scheduler.max_preempt_grace 5m -> 1m"},
      {"scheduler { fair_share_half_life: \"1h\" }",
       "scheduler.fair_share_half_life 24h -> 1h"},
      {"scheduler { measured_percentile: 50 }",
       "scheduler.measured_percentile 95 -> 50"},
      {"scheduler { lost_job_policy: \"requeue\" }",
       "scheduler.lost_job_policy fail -> requeue"},
      {"scheduler { starting_timeout: \"2m\" }",
       "scheduler.starting_timeout 1m -> 2m"},
      {"scheduler { max_nodes: 7 }", "scheduler.max_nodes 10000 -> 7"},
      {"scheduler { time_limit { service_class: \"spot\" "
       "default_max_runtime: \"4h\" } }",
       "scheduler.time_limit[spot].default_max_runtime 12h -> 4h"},
      {"scheduler { class_floors: \"spot=0.5\" }",
       "scheduler.class_floors reserved=1,on-demand=0.8,spot=0 -> "
       "reserved=1,on-demand=0.8,spot=0.5"},
      {"scheduler { class_floors: \"on-demand-start=0.6\" }",
       "scheduler.class_floors reserved=1,on-demand=0.8,spot=0 -> "
       "reserved=1,on-demand=0.8,spot=0,on-demand-start=0.6"},
      // Each class's start floor in class order, and only below its floor
      // (spot's 0.5 is above its floor of 0: it does nothing, not shown).
      {"scheduler { class_floors: "
       "\"spot-start=0.5,reserved-start=0.9,on-demand-start=0.6\" }",
       "scheduler.class_floors reserved=1,on-demand=0.8,spot=0 -> "
       "reserved=1,on-demand=0.8,spot=0,reserved-start=0.9,on-demand-start="
       "0.6"},
      {"scheduler { power_fit: \"balanced\" }",
       "scheduler.power_fit leaf -> balanced"},
      {"scheduler { efficiency_knee: \"0.6\" }",
       "scheduler.efficiency_knee 0.5 -> 0.6"},
      {"scheduler { plus_commit: \"floor-clamp\" }",
       "scheduler.plus_commit percentile -> floor-clamp"},
      {"tenant { name: \"globex\" fair_share_weight: 3 }",
       "tenant[globex].fair_share_weight none -> 3"},
      {"tenant { name: \"initech\" quota { max_running_gpus { "
       "service_class: \"on-demand\" gpus: 4 } } }",
       "tenant[initech].quota.max_running_gpus[on-demand] none -> 4"},
      {"tenant { name: \"initech\" quota { max_pending_jobs: 0 } }",
       "tenant[initech].quota.max_pending_jobs none -> 0"},
      {"log { level: \"debug\" }", "log.level (--log-level) -> debug"},
  };
  for (const Case& c : cases) {
    auto plan = DiffConfig(Parse("11kW"), Parse("11kW", c.extra));
    ASSERT_TRUE(plan.ok()) << c.extra << ": " << plan.status();
    ASSERT_FALSE(plan->settings.empty()) << c.extra;
    // A new tenant also names its (default) weight first.
    EXPECT_EQ(plan->settings.back().Text(), c.change) << c.extra;
    EXPECT_TRUE(plan->caps.empty());
  }
  // The installed values are the new file's.
  auto plan = DiffConfig(
      Parse("11kW"),
      Parse("11kW",
            "scheduler { stop_grace: \"2s\" }\n"
            "tenant { name: \"initech\" quota { max_pending_jobs: 3 } }\n"
            "log { level: \"warn\" }"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->scheduler.stop_grace, absl::Seconds(2));
  EXPECT_EQ(plan->tenant_quotas.at("initech").max_pending_jobs, 3);
  EXPECT_EQ(plan->tenant_weights.at("initech"), 1u);
  EXPECT_EQ(plan->log_level, "warn");
}

TEST(DiffConfig, WhatNeedsARestartIsRefusedByName) {
  struct Case {
    std::string extra;
    std::string names;
  } const cases[] = {
      {"node { name: \"n2\" domain: \"rk1\" }\n", "the set of nodes"},
      {"domain { name: \"rk2\" parent: \"site\" kind: \"rack\" cap: \"1kW\" "
       "}\n",
       "the set of domains"},
      {"scheduler { admission: \"measured\" }\n", "scheduler.admission"},
      {"scheduler { default_domain: \"rk1\" }\n", "scheduler.default_domain"},
      {"node_model { name: \"m\" base_power: \"1kW\" }\n"
       "scheduler { default_node_model: \"m\" }\n",
       "node n1"},  // its base power (from default_node_model) changes
      {"gpu_model { name: \"X1\" tdp: \"500W\" }\n", "the GPU models"},
      {"billing { allow_unpriced: true }\n", "billing.allow_unpriced"},
  };
  for (const Case& c : cases) {
    auto r = DiffConfig(Parse("11kW"), Parse("12kW", c.extra));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << c.extra;
    EXPECT_NE(r.status().message().find(c.names), absl::string_view::npos)
        << r.status();
    EXPECT_NE(r.status().message().find("restart"), absl::string_view::npos);
    EXPECT_NE(r.status().message().find("nothing changed"),
              absl::string_view::npos);
  }
  // A tenant the config named is removed: a restart (its jobs' tenant).
  auto r =
      DiffConfig(Parse("11kW", "tenant { name: \"globex\" }"), Parse("11kW"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("tenant globex (removed)"),
            absl::string_view::npos)
      << r.status();
}

TEST(DiffConfig, BadLogLevelIsRefusedByTheParser) {
  auto c = config::ParseClusterConfig(
      "domain { name: \"site\" cap: \"1MW\" }\nlog { level: \"loud\" }\n",
      "test.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("test.conf:2: log.level: \"loud\""),
            absl::string_view::npos)
      << c.status();
}

}  // namespace
}  // namespace joule::daemon
