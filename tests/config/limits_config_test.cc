// scheduler.time_limit and tenant.quota in the cluster config.

#include <string>

#include "config/cluster_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::config {
namespace {

using ::testing::HasSubstr;

constexpr char kSite[] = "domain { name: \"site\" cap: \"1MW\" }\n";

TEST(LimitsConfigTest, DefaultsOutOfTheBox) {
  auto cfg = ParseClusterConfig(kSite, "c.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  const scheduler::TimeLimits& l = cfg->scheduler.time_limits;
  EXPECT_EQ(l.on_demand.default_max_runtime, absl::Hours(24));
  EXPECT_EQ(l.on_demand.max_runtime_limit, absl::Hours(168));
  EXPECT_EQ(l.spot.default_max_runtime, absl::Hours(12));
  EXPECT_EQ(
      DefaultClusterConfig().scheduler.time_limits.reserved.max_runtime_limit,
      absl::Hours(336));
  EXPECT_TRUE(cfg->tenant_quotas.empty());
}

TEST(LimitsConfigTest, ParsesLimitsAndQuotas) {
  auto cfg = ParseClusterConfig(
      std::string(kSite) +
          "scheduler {\n"
          "  time_limit { service_class: \"spot\" default_max_runtime: \"2h\" "
          "max_runtime_limit: \"6h\" }\n"
          "  time_limit { service_class: \"on-demand\" max_runtime_limit: "
          "\"48h\" }\n"
          "}\n"
          "tenant { name: \"acme\" quota { max_running_gpus { service_class: "
          "\"on-demand\" gpus: 16 } max_pending_jobs: 100 } }\n"
          "tenant { name: \"beta\" quota { max_running_gpus { service_class: "
          "\"spot\" gpus: 0 } } }\n",
      "c.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  const scheduler::TimeLimits& l = cfg->scheduler.time_limits;
  EXPECT_EQ(l.spot.default_max_runtime, absl::Hours(2));
  EXPECT_EQ(l.spot.max_runtime_limit, absl::Hours(6));
  EXPECT_EQ(l.on_demand.default_max_runtime, absl::Hours(24));  // kept
  EXPECT_EQ(l.on_demand.max_runtime_limit, absl::Hours(48));
  const scheduler::TenantQuota& acme = cfg->tenant_quotas.at("acme");
  EXPECT_EQ(acme.max_running_gpus[1], 16);
  EXPECT_EQ(acme.max_running_gpus[0], scheduler::kNoLimit);
  EXPECT_EQ(acme.max_pending_jobs, 100);
  const scheduler::TenantQuota& beta = cfg->tenant_quotas.at("beta");
  EXPECT_EQ(beta.max_running_gpus[2], 0);
  EXPECT_EQ(beta.max_pending_jobs, scheduler::kNoLimit);
}

struct Bad {
  const char* name;
  const char* text;
  const char* want;
};

TEST(LimitsConfigTest, RefusesBadEntries) {
  const Bad cases[] = {
      {"unknown class",
       "scheduler {\n  time_limit { service_class: \"gold\" }\n}\n",
       "c.conf:2: scheduler.time_limit[0].service_class: \"gold\" is not one "
       "of: reserved, on-demand, spot"},
      {"default above limit",
       "scheduler {\n  time_limit { service_class: \"spot\" "
       "default_max_runtime: \"100h\" }\n}\n",
       "scheduler.time_limit[0].default_max_runtime: 100h is above "
       "max_runtime_limit 72h"},
      {"zero limit",
       "scheduler {\n  time_limit { service_class: \"spot\" "
       "max_runtime_limit: \"0s\" }\n}\n",
       "scheduler.time_limit[0].max_runtime_limit: must be positive"},
      {"not a duration (the field named once)",
       "scheduler {\n  time_limit { service_class: \"spot\" "
       "default_max_runtime: \"x\" }\n}\n",
       "c.conf:2: scheduler.time_limit[0].default_max_runtime: \"x\" is not "
       "a duration"},
      {"quota class",
       "tenant { name: \"a\" quota { max_running_gpus { service_class: "
       "\"x\" gpus: 1 } } }\n",
       "tenant[0].quota.max_running_gpus[0].service_class: \"x\" is not one "
       "of"},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.name);
    auto cfg = ParseClusterConfig(std::string(kSite) + c.text, "c.conf");
    ASSERT_FALSE(cfg.ok());
    EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(cfg.status().message(), HasSubstr(c.want));
  }
}

}  // namespace
}  // namespace joule::config
