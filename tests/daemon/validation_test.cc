// The validation layer, table-driven: each oversized or malformed field is
// refused with its name; the field table is the one docs/api.md shows.
#include "daemon/validation.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::daemon::validation {
namespace {

using ::testing::HasSubstr;

v1::JobSpec GoodSpec() {
  v1::JobSpec s;
  s.set_tenant("acme");
  s.set_name("train-1");
  s.add_command("python");
  s.add_command("train.py");
  (*s.mutable_env())["BATCH"] = "64";
  s.set_gpus_per_node(8);
  s.set_nodes(2);
  s.set_sim_load(0.5);
  s.mutable_max_runtime()->set_seconds(3600);
  return s;
}

struct SpecCase {
  std::string name;
  std::function<void(v1::JobSpec*)> change;
  std::string field;  // named in the error ("" = accepted)
};

class SpecTest : public ::testing::TestWithParam<SpecCase> {};

TEST_P(SpecTest, RefusedWithItsField) {
  v1::JobSpec s = GoodSpec();
  GetParam().change(&s);
  absl::Status st = JobSpec(s);
  if (GetParam().field.empty()) {
    EXPECT_TRUE(st.ok()) << st;
    return;
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(GetParam().field + ":"));
  EXPECT_LT(st.message().size(), 512u);  // a 10 MB value is not echoed
}

const double kNan = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

INSTANTIATE_TEST_SUITE_P(
    Fields, SpecTest,
    ::testing::Values(
        SpecCase{"good", [](auto*) {}, ""},
        SpecCase{"tenant_dot", [](auto* s) { s->set_tenant("."); },
                 "spec.tenant"},
        SpecCase{"tenant_dotdot", [](auto* s) { s->set_tenant(".."); },
                 "spec.tenant"},
        SpecCase{"tenant_slash", [](auto* s) { s->set_tenant("a/b"); },
                 "spec.tenant"},
        // 128 bytes is the most a name may have.
        SpecCase{"name_128",
                 [](auto* s) { s->set_name(std::string(128, 'n')); }, ""},
        SpecCase{"name_129",
                 [](auto* s) { s->set_name(std::string(129, 'n')); },
                 "spec.name"},
        SpecCase{"name_10mb",
                 [](auto* s) { s->set_name(std::string(10 << 20, 'n')); },
                 "spec.name"},
        SpecCase{"model", [](auto* s) { s->set_gpu_model("H100 "); },
                 "spec.gpu_model"},
        SpecCase{"no_command", [](auto* s) { s->clear_command(); },
                 "spec.command"},
        SpecCase{"nul_in_arg",
                 [](auto* s) { s->add_command(std::string("a\0b", 3)); },
                 "spec.command[2]"},
        // 4,096 entries of argv + env together: 1 env + 4,095 argv is fine,
        // 1 env + 4,096 is one too many.
        SpecCase{"argv_4095",
                 [](auto* s) {
                   s->clear_command();
                   for (int i = 0; i < 4095; ++i) s->add_command("x");
                 },
                 ""},
        SpecCase{"argv_4096",
                 [](auto* s) {
                   s->clear_command();
                   for (int i = 0; i < 4096; ++i) s->add_command("x");
                 },
                 "spec.command"},
        SpecCase{"argv_100000",
                 [](auto* s) {
                   for (int i = 0; i < 100000; ++i) s->add_command("x");
                 },
                 "spec.command"},
        // 256 KiB of argv + env: "python\0" (7) + "train.py\0" (9) +
        // "BATCH=64\0" (9) = 25 bytes, so one more argument of 262,119
        // bytes (+ its NUL) reaches 262,145 > 262,144.
        SpecCase{"bytes_over",
                 [](auto* s) { s->add_command(std::string(262119, 'a')); },
                 "spec.command"},
        SpecCase{"bytes_at",
                 [](auto* s) { s->add_command(std::string(262118, 'a')); }, ""},
        SpecCase{"env_empty_key",
                 [](auto* s) { (*s->mutable_env())[""] = "1"; }, "spec.env"},
        SpecCase{"env_eq_key",
                 [](auto* s) { (*s->mutable_env())["A=B"] = "1"; }, "spec.env"},
        SpecCase{"env_digit_key",
                 [](auto* s) { (*s->mutable_env())["1A"] = "1"; }, "spec.env"},
        SpecCase{
            "env_nul_key",
            [](auto* s) { (*s->mutable_env())[std::string("A\0B", 3)] = "1"; },
            "spec.env"},
        SpecCase{"env_cuda",
                 [](auto* s) {
                   (*s->mutable_env())["CUDA_VISIBLE_DEVICES"] = "0,1";
                 },
                 "spec.env"},
        SpecCase{"env_nvidia",
                 [](auto* s) {
                   (*s->mutable_env())["NVIDIA_VISIBLE_DEVICES"] = "all";
                 },
                 "spec.env"},
        SpecCase{"env_joule",
                 [](auto* s) { (*s->mutable_env())["JOULE_JOB_ID"] = "x"; },
                 "spec.env"},
        SpecCase{"env_ld_preload_ok",
                 [](auto* s) { (*s->mutable_env())["LD_PRELOAD"] = "x.so"; },
                 ""},
        SpecCase{
            "env_nul_value",
            [](auto* s) { (*s->mutable_env())["A"] = std::string("1\0", 2); },
            "spec.env[A]"},
        SpecCase{"gpus_0", [](auto* s) { s->set_gpus_per_node(0); },
                 "spec.gpus_per_node"},
        SpecCase{"gpus_65", [](auto* s) { s->set_gpus_per_node(65); },
                 "spec.gpus_per_node"},
        SpecCase{"nodes_1025", [](auto* s) { s->set_nodes(1025); },
                 "spec.nodes"},
        SpecCase{"priority", [](auto* s) { s->set_priority(2000000); },
                 "spec.priority"},
        SpecCase{"power_neg", [](auto* s) { s->set_power_limit_mw(-1); },
                 "spec.power_limit_mw"},
        // 10 kW = 10,000,000 mW per GPU is the most.
        SpecCase{"power_big",
                 [](auto* s) { s->set_power_limit_mw(10'000'001); },
                 "spec.power_limit_mw"},
        SpecCase{"min_power_big",
                 [](auto* s) { s->set_min_power_limit_mw(INT64_MAX); },
                 "spec.min_power_limit_mw"},
        // 2^62 s of max runtime; 366 days = 31,622,400 s is the most.
        SpecCase{"runtime_huge",
                 [](auto* s) {
                   s->mutable_max_runtime()->set_seconds(int64_t{1} << 62);
                 },
                 "spec.max_runtime"},
        SpecCase{
            "runtime_366d",
            [](auto* s) { s->mutable_max_runtime()->set_seconds(31'622'400); },
            ""},
        SpecCase{"runtime_neg",
                 [](auto* s) { s->mutable_max_runtime()->set_seconds(-1); },
                 "spec.max_runtime"},
        SpecCase{"sim_nan", [](auto* s) { s->set_sim_load(kNan); },
                 "spec.sim_load"},
        SpecCase{"sim_inf", [](auto* s) { s->set_sim_load(kInf); },
                 "spec.sim_load"},
        SpecCase{"sim_2", [](auto* s) { s->set_sim_load(2); },
                 "spec.sim_load"},
        SpecCase{"power_mode_efficiency",
                 [](auto* s) {
                   s->set_power_mode(v1::POWER_MODE_EFFICIENCY);
                 },
                 ""},
        SpecCase{"power_mode_7",
                 [](auto* s) { s->set_power_mode(static_cast<v1::PowerMode>(7)); },
                 "spec.power_mode"},
        // Limits: 0 is the agent default; else 1 MiB (1,048,576 bytes) ..
        // 16 TiB (2^44) and 10 .. 1,024,000 millicpus.
        SpecCase{"mem_floor", [](auto* s) { s->set_memory_bytes(1 << 20); },
                 ""},
        SpecCase{"mem_small",
                 [](auto* s) { s->set_memory_bytes((1 << 20) - 1); },
                 "spec.memory_bytes"},
        SpecCase{"mem_16tib",
                 [](auto* s) { s->set_memory_bytes(int64_t{1} << 44); }, ""},
        SpecCase{"mem_big",
                 [](auto* s) { s->set_memory_bytes((int64_t{1} << 44) + 1); },
                 "spec.memory_bytes"},
        SpecCase{"mem_neg", [](auto* s) { s->set_memory_bytes(-1); },
                 "spec.memory_bytes"},
        SpecCase{"cpu_floor", [](auto* s) { s->set_cpu_millis(10); }, ""},
        SpecCase{"cpu_small", [](auto* s) { s->set_cpu_millis(9); },
                 "spec.cpu_millis"},
        SpecCase{"cpu_max", [](auto* s) { s->set_cpu_millis(1'024'000); }, ""},
        SpecCase{"cpu_big", [](auto* s) { s->set_cpu_millis(1'024'001); },
                 "spec.cpu_millis"},
        SpecCase{"cpu_neg", [](auto* s) { s->set_cpu_millis(-1000); },
                 "spec.cpu_millis"}),
    [](const auto& info) { return info.param.name; });

TEST(Validation, NamesAndText) {
  EXPECT_TRUE(Name("f", "a.b-c_9").ok());
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "a b", "a/b",
                                std::string(129, 'a'), std::string("a\0", 2)}) {
    absl::Status s = Name("tenant.name", bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("tenant.name:"));
  }
  EXPECT_TRUE(OptionalName("f", "").ok());
  // Free text: 1 KiB is the most.
  EXPECT_TRUE(Text("reason", std::string(1024, 'r')).ok());
  EXPECT_EQ(Text("reason", std::string(1025, 'r')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Text("reason", std::string(10 << 20, 'r')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Validation, TimesAndNumbers) {
  const absl::Time now = absl::FromUnixSeconds(1767225600);  // 2026-01-01
  auto at = [](absl::Time t) { return ToProtoTime(t); };
  EXPECT_TRUE(Time("effective", at(now), now).ok());
  // A first price effective in 1653.
  EXPECT_EQ(Time("effective",
                 at(absl::FromCivil(absl::CivilSecond(1653, 1, 1),
                                    absl::UTCTimeZone())),
                 now)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Time("t", at(absl::FromUnixSeconds(946684800)), now).ok());
  EXPECT_FALSE(Time("t", at(absl::FromUnixSeconds(946684799)), now).ok());
  EXPECT_TRUE(Time("t", at(now + absl::Hours(24 * 365)), now).ok());
  EXPECT_FALSE(Time("t", at(now + absl::Hours(24 * 367)), now).ok());
  EXPECT_FALSE(Real("x", kNan, 0, 1).ok());
  EXPECT_FALSE(Real("x", -kInf, -1e300, 1).ok());
  EXPECT_TRUE(Real("x", 0.25, 0, 1).ok());
  EXPECT_FALSE(IntRange("x", 11, 0, 10).ok());
}

TEST(Validation, GpuReportBounds) {
  v1::GpuInfo info;
  info.set_max_power_limit_mw(700'000);
  v1::GpuStatus g;
  g.set_power_mw(1'400'000);  // exactly 2 x max
  EXPECT_TRUE(GpuReport("report.gpus[0]", g, info).ok());
  g.set_power_mw(1'400'001);
  EXPECT_THAT(std::string(GpuReport("report.gpus[0]", g, info).message()),
              HasSubstr("report.gpus[0].power_mw:"));
  g.set_power_mw(-1);
  EXPECT_FALSE(GpuReport("report.gpus[0]", g, info).ok());
}

// Every field of the table appears in docs/api.md's "Input limits".
TEST(Validation, TableIsDocumented) {
  std::ifstream in(std::string(JOULE_SOURCE_DIR) + "/docs/api.md");
  const std::string doc((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
  ASSERT_THAT(doc, HasSubstr("## Input limits"));
  const std::string section = doc.substr(doc.find("## Input limits"));
  for (const FieldRule& r : FieldTable()) {
    EXPECT_THAT(section,
                HasSubstr(absl::StrCat("| `", r.field, "` | ", r.rule, " |")))
        << r.field;
  }
}

}  // namespace
}  // namespace joule::daemon::validation
