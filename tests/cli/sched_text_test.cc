#include "cli/sched_text.h"

#include "common/proto_time.h"
#include "gtest/gtest.h"

namespace joule::cli {
namespace {

TEST(SchedTextTest, QuotaFlags) {
  auto q = ParseQuotaFlags({"on-demand=16", "spot=0"}, 100);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->max_running_gpus_on_demand(), 16u);
  EXPECT_TRUE(q->has_max_running_gpus_spot());
  EXPECT_FALSE(q->has_max_running_gpus_reserved());
  EXPECT_EQ(QuotaText(*q), "on-demand 16, spot 0; pending 100");
  EXPECT_EQ(QuotaText(v1::TenantQuota()), "none");
  EXPECT_EQ(ParseQuotaFlags({"gold=1"}, -1).status().message(),
            "--max-gpus: \"gold\" is not one of reserved, on-demand, spot");
  EXPECT_EQ(ParseQuotaFlags({"spot"}, -1).status().message(),
            "--max-gpus: \"spot\" is not CLASS=GPUS (e.g. on-demand=16)");
}

TEST(SchedTextTest, After) {
  auto a = ParseAfter("job-000001, job-000002,");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (std::vector<std::string>{"job-000001", "job-000002"}));
  EXPECT_TRUE(ParseAfter("")->empty());
  EXPECT_FALSE(ParseAfter("job-1;rm").ok());
}

TEST(SchedTextTest, LimitAndContract) {
  v1::Job j;
  j.mutable_spec()->set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
  *j.mutable_time_limit() = ToProtoDuration(absl::Hours(24));
  EXPECT_EQ(TimeLimitText(j), "24h (on-demand default)");
  *j.mutable_spec()->mutable_max_runtime() = ToProtoDuration(absl::Hours(2));
  *j.mutable_time_limit() = ToProtoDuration(absl::Hours(2));
  EXPECT_EQ(TimeLimitText(j), "2h");
  EXPECT_EQ(ContractText(j), "");
  j.mutable_spec()->set_service_class(v1::SERVICE_CLASS_RESERVED);
  j.set_effective_class(v1::SERVICE_CLASS_ON_DEMAND);
  j.add_attempts()->set_billed_class(v1::SERVICE_CLASS_RESERVED);
  EXPECT_EQ(ContractText(j),
            "beyond the tenant's contracted reserved GPUs: runs as on-demand; "
            "its GPUs are billed as reserved overage");
}

// `job submit --preempt-signal/--preempt-grace`: canonical names, bounds,
// errors naming the flag; what `job show` prints.
TEST(SchedTextTest, PreemptFlags) {
  struct Case {
    const char* signal;
    const char* grace;
    const char* error;  // "" = accepted
    const char* shown;  // PreemptText when accepted
  };
  const Case cases[] = {
      {"", "", "", "SIGTERM, SIGKILL after the stop grace"},
      {"SIGUSR1", "60s", "", "SIGUSR1, SIGKILL after 1m"},
      {"usr2", "", "", "SIGUSR2, SIGKILL after the stop grace"},
      {"", "0s", "", "SIGTERM, SIGKILL after 0s"},
      {"", "24h", "", "SIGTERM, SIGKILL after 24h"},
      {"SIGKILL", "", "--preempt-signal: \"SIGKILL\" is not one of SIGTERM, "
                      "SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT", ""},
      {"15", "", "--preempt-signal", ""},
      {"", "-1s", "--preempt-grace", ""},
      {"", "soon", "--preempt-grace", ""},
      {"", "24h1s", "--preempt-grace: 24h1s is more than 24h", ""},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec;
    const absl::Status st = ApplyPreemptFlags(c.signal, c.grace, &spec);
    if (std::string(c.error).empty()) {
      ASSERT_TRUE(st.ok()) << c.signal << " " << c.grace << ": " << st;
      EXPECT_EQ(PreemptText(spec), c.shown) << c.signal << " " << c.grace;
      EXPECT_EQ(spec.has_preempt_grace(), std::string(c.grace) != "");
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.signal;
      EXPECT_EQ(std::string(st.message()).find(c.error), 0u) << st;
    }
  }
}

}  // namespace
}  // namespace joule::cli
