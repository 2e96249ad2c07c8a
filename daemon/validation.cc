#include "daemon/validation.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/job_env.h"
#include "common/preempt_signal.h"
#include "common/proto_time.h"
#include "common/resources.h"
#include "common/status_macros.h"

namespace joule::daemon::validation {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

// Quotes at most 64 bytes of a refused value (a 10 MB name is not echoed).
std::string Quote(absl::string_view v) {
  std::string out = "\"";
  for (char c : v.substr(0, 64)) {
    out += absl::ascii_isprint(c) ? c : '?';
  }
  return absl::StrCat(out, v.size() > 64 ? "...\"" : "\"");
}

constexpr FieldRule kTable[] = {
    {"(any name)", "1..128 bytes of [A-Za-z0-9._-], not \".\" or \"..\""},
    {"(any free text: reasons, messages)", "at most 1 KiB, no NUL"},
    {"(any number)", "finite (no NaN or infinity), within its range"},
    {"(any time)", "within [2000-01-01, now + 1 year]"},
    {"spec.tenant", "name"},
    {"spec.name", "name or empty"},
    {"spec.gpu_model", "name or empty"},
    {"spec.command",
     "1..4096 entries, no NUL, command[0] not empty; argv + env together at "
     "most 256 KiB and 4,096 entries"},
    {"spec.env",
     "keys [A-Za-z_][A-Za-z0-9_]* (at most 128 bytes), not "
     "CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES or JOULE_*; values no NUL"},
    {"spec.gpus_per_node", "1..64"},
    {"spec.nodes", "0..1024 (0 = 1)"},
    {"spec.priority", "-1,000,000..1,000,000"},
    {"spec.power_limit_mw", "0..10,000,000 (10 kW)"},
    {"spec.min_power_limit_mw", "0..10,000,000, at most power_limit_mw"},
    {"spec.max_runtime", "0..366 days"},
    {"spec.sim_load", "0..1, finite"},
    {"spec.power_mode", "unspecified, performance or efficiency"},
    {"spec.memory_bytes", "0 (agent default) or 1 MiB..16 TiB"},
    {"spec.cpu_millis", "0 (agent default) or 10..1,024,000 (1000 = 1 CPU)"},
    {"spec.preempt_signal",
     "empty (SIGTERM) or SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT"},
    {"spec.preempt_grace",
     "unset (stop_grace) or 0..24 hours, at most scheduler.max_preempt_grace"},
    {"request_id", "name or empty"},
    {"cancel.reason, set_power_cap.reason", "free text"},
    {"tenant.name", "name"},
    {"tenant.fair_share_weight", "0..1,000,000"},
    {"register.node_name", "name"},
    {"register.address",
     "at most 255 bytes of [A-Za-z0-9.:_[]-] (host, IPv4 or IPv6)"},
    {"register.gpu_backend, register.agent_version", "at most 128 bytes"},
    {"register.gpus", "at most 64, index order 0..N-1"},
    {"register.gpus[].uuid, .model", "at most 128 bytes; model a name"},
    {"register.gpus[].memory_total_bytes", "at most 16 TiB"},
    {"register.gpus[].*_power_limit_mw",
     "0 <= min <= default <= max <= 10,000,000 (default 0 = unknown)"},
    {"register.running_jobs", "at most 4,096; job_id a name"},
    {"report.gpus[].power_mw", "0..2 x the GPU's registered max limit"},
    {"report.gpus[].energy_mj",
     "monotonic per GPU (a decrease is a counter reset: an event, no "
     "negative energy)"},
    {"report.gpus[].utilization_pct", "0..100"},
    {"report.gpus[].temperature_c", "-40..200"},
    {"report.gpus[].memory_used_bytes", "at most memory_total_bytes"},
    {"report.gpus[].health_detail", "free text"},
    {"job_update.time, .start_time",
     "clamped into [StartJob sent, update received] by the daemon"},
};

}  // namespace

absl::Duration MaxRuntime() { return absl::Hours(24 * 366); }

absl::Span<const FieldRule> FieldTable() { return kTable; }

absl::Status Name(absl::string_view field, absl::string_view value) {
  if (value.empty()) return Bad(field, "must not be empty");
  if (value.size() > kMaxNameBytes) {
    return Bad(field, absl::StrCat("is ", value.size(),
                                   " bytes; at most 128 allowed"));
  }
  if (value == "." || value == "..") {
    return Bad(field, absl::StrCat(Quote(value), " is not a name"));
  }
  for (char c : value) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return Bad(field, absl::StrCat(Quote(value),
                                     " may contain only letters, digits, "
                                     "'-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::Status OptionalName(absl::string_view field, absl::string_view value) {
  return value.empty() ? absl::OkStatus() : Name(field, value);
}

absl::Status Text(absl::string_view field, absl::string_view value,
                  size_t max) {
  if (value.size() > max) {
    return Bad(field, absl::StrCat("is ", value.size(), " bytes; at most ", max,
                                   " allowed"));
  }
  if (value.find('\0') != absl::string_view::npos) {
    return Bad(field, "must not contain NUL");
  }
  return absl::OkStatus();
}

absl::Status IntRange(absl::string_view field, int64_t value, int64_t lo,
                      int64_t hi) {
  if (value < lo || value > hi) {
    return Bad(field, absl::StrCat(value, " is outside ", lo, "..", hi));
  }
  return absl::OkStatus();
}

absl::Status Real(absl::string_view field, double value, double lo, double hi) {
  if (!std::isfinite(value)) return Bad(field, "must be a finite number");
  if (value < lo || value > hi) {
    return Bad(field, absl::StrCat(value, " is outside ", lo, "..", hi));
  }
  return absl::OkStatus();
}

absl::Status Time(absl::string_view field, const google::protobuf::Timestamp& t,
                  absl::Time now) {
  if (t.nanos() < 0 || t.nanos() > 999'999'999) {
    return Bad(field, "nanos must be within 0..999999999");
  }
  const absl::Time v = FromProtoTime(t);
  const absl::Time lo = absl::FromUnixSeconds(946684800);  // 2000-01-01
  if (v < lo || v > now + absl::Hours(24 * 366)) {
    return Bad(field, absl::StrCat(absl::FormatTime(v, absl::UTCTimeZone()),
                                   " is outside [2000-01-01, now + 1 year]"));
  }
  return absl::OkStatus();
}

absl::Status Duration(absl::string_view field,
                      const google::protobuf::Duration& d, absl::Duration max) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999'999'999) {
    return Bad(field, "must not be negative");
  }
  if (d.seconds() > absl::ToInt64Seconds(max)) {
    return Bad(field, absl::StrCat("is ", d.seconds(), " s; at most ",
                                   absl::FormatDuration(max), " allowed"));
  }
  return absl::OkStatus();
}

absl::Status JobSpec(const v1::JobSpec& spec) {
  RETURN_IF_ERROR(Name("spec.tenant", spec.tenant()));
  RETURN_IF_ERROR(OptionalName("spec.name", spec.name()));
  RETURN_IF_ERROR(OptionalName("spec.gpu_model", spec.gpu_model()));
  if (spec.command_size() == 0 || spec.command(0).empty()) {
    return Bad("spec.command", "must name a program to run");
  }
  const size_t entries = spec.command_size() + spec.env_size();
  if (entries > kMaxArgvEnvEntries) {
    return Bad("spec.command", absl::StrCat("argv + env have ", entries,
                                            " entries; at most 4096 allowed"));
  }
  size_t bytes = 0;
  for (int i = 0; i < spec.command_size(); ++i) {
    bytes += spec.command(i).size() + 1;
    if (spec.command(i).find('\0') != std::string::npos) {
      return Bad(absl::StrCat("spec.command[", i, "]"), "must not contain NUL");
    }
  }
  for (const auto& [k, v] : spec.env()) {
    bytes += k.size() + v.size() + 2;
    if (!ValidEnvName(k)) {
      return Bad("spec.env",
                 absl::StrCat("key ", Quote(k),
                              " must match [A-Za-z_][A-Za-z0-9_]* (at most "
                              "128 bytes)"));
    }
    if (ReservedEnvName(k)) {
      return Bad("spec.env",
                 absl::StrCat("key ", k,
                              " is set by Joule for every job (reserved: "
                              "CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES, "
                              "JOULE_*)"));
    }
    if (v.find('\0') != std::string::npos) {
      return Bad(absl::StrCat("spec.env[", k, "]"), "must not contain NUL");
    }
  }
  if (bytes > kMaxArgvEnvBytes) {
    return Bad("spec.command",
               absl::StrCat("argv + env are ", bytes,
                            " bytes; at most 262144 (256 KiB) allowed"));
  }
  if (spec.gpus_per_node() == 0) {
    return Bad("spec.gpus_per_node", "must be at least 1");
  }
  RETURN_IF_ERROR(
      IntRange("spec.gpus_per_node", spec.gpus_per_node(), 1, kMaxGpusPerNode));
  if (spec.nodes() > kMaxNodesPerJob) {
    return Bad("spec.nodes", "must be at most 1024");
  }
  RETURN_IF_ERROR(
      IntRange("spec.priority", spec.priority(), -kMaxPriority, kMaxPriority));
  if (spec.power_limit_mw() < 0 || spec.min_power_limit_mw() < 0) {
    return Bad("spec.power_limit_mw", "power must not be negative");
  }
  RETURN_IF_ERROR(
      IntRange("spec.power_limit_mw", spec.power_limit_mw(), 0, kMaxPowerMw));
  RETURN_IF_ERROR(IntRange("spec.min_power_limit_mw", spec.min_power_limit_mw(),
                           0, kMaxPowerMw));
  RETURN_IF_ERROR(
      Duration("spec.max_runtime", spec.max_runtime(), MaxRuntime()));
  if (!std::isfinite(spec.sim_load()) || spec.sim_load() < 0 ||
      spec.sim_load() > 1) {
    return Bad("spec.sim_load", "must be within 0..1");
  }
  if (!v1::PowerMode_IsValid(spec.power_mode())) {
    return Bad("spec.power_mode", "must be performance or efficiency");
  }
  if (spec.memory_bytes() != 0) {
    RETURN_IF_ERROR(IntRange("spec.memory_bytes", spec.memory_bytes(),
                             kMinJobMemoryBytes, kMaxJobMemoryBytes));
  }
  if (spec.cpu_millis() != 0) {
    RETURN_IF_ERROR(IntRange("spec.cpu_millis", spec.cpu_millis(),
                             kMinJobCpuMillis, kMaxJobCpuMillis));
  }
  if (!spec.preempt_signal().empty() &&
      (CanonicalPreemptSignal(spec.preempt_signal()) !=
       spec.preempt_signal())) {
    return Bad("spec.preempt_signal",
               absl::StrCat(Quote(spec.preempt_signal()), " is not one of ",
                            PreemptSignalList()));
  }
  if (spec.has_preempt_grace()) {
    RETURN_IF_ERROR(Duration("spec.preempt_grace", spec.preempt_grace(),
                             absl::Hours(24)));
  }
  return absl::OkStatus();
}

absl::Status Register(const v1::RegisterRequest& req) {
  RETURN_IF_ERROR(Name("node_name", req.node_name()));
  if (req.address().size() > kMaxAddressBytes) {
    return Bad("address", absl::StrCat("is ", req.address().size(),
                                       " bytes; at most 255 allowed"));
  }
  for (char c : req.address()) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != ':' && c != '-' &&
        c != '_' && c != '[' && c != ']') {
      return Bad("address", absl::StrCat(Quote(req.address()),
                                         " is not a host name or IP address"));
    }
  }
  RETURN_IF_ERROR(Text("gpu_backend", req.gpu_backend(), kMaxNameBytes));
  RETURN_IF_ERROR(Text("agent_version", req.agent_version(), kMaxNameBytes));
  if (req.gpus_size() > static_cast<int>(kMaxGpusPerNode)) {
    return Bad("gpus", "at most 64 GPUs per node");
  }
  for (int i = 0; i < req.gpus_size(); ++i) {
    const v1::GpuInfo& g = req.gpus(i);
    const std::string f = absl::StrCat("gpus[", i, "]");
    RETURN_IF_ERROR(Text(f + ".uuid", g.uuid(), kMaxNameBytes));
    RETURN_IF_ERROR(OptionalName(f + ".model", g.model()));
    if (g.memory_total_bytes() > kMaxGpuMemoryBytes) {
      return Bad(f + ".memory_total_bytes", "at most 16 TiB");
    }
    if (g.min_power_limit_mw() < 0 ||
        g.max_power_limit_mw() < g.min_power_limit_mw()) {
      return Bad(f + ".max_power_limit_mw",
                 "must be >= min_power_limit_mw >= 0");
    }
    RETURN_IF_ERROR(IntRange(f + ".max_power_limit_mw", g.max_power_limit_mw(),
                             0, kMaxPowerMw));
    if (g.default_power_limit_mw() != 0) {
      RETURN_IF_ERROR(IntRange(f + ".default_power_limit_mw",
                               g.default_power_limit_mw(),
                               g.min_power_limit_mw(), g.max_power_limit_mw()));
    }
  }
  if (req.running_jobs_size() > static_cast<int>(kMaxRunningJobs)) {
    return Bad("running_jobs", "at most 4096 entries");
  }
  for (int i = 0; i < req.running_jobs_size(); ++i) {
    RETURN_IF_ERROR(Name(absl::StrCat("running_jobs[", i, "].job_id"),
                         req.running_jobs(i).job_id()));
  }
  return absl::OkStatus();
}

absl::Status GpuReport(absl::string_view field, const v1::GpuStatus& g,
                       const v1::GpuInfo& registered) {
  const int64_t max_limit = registered.max_power_limit_mw() > 0
                                ? registered.max_power_limit_mw()
                                : kMaxPowerMw;
  RETURN_IF_ERROR(IntRange(absl::StrCat(field, ".power_mw"), g.power_mw(), 0,
                           2 * max_limit));
  RETURN_IF_ERROR(IntRange(absl::StrCat(field, ".utilization_pct"),
                           g.utilization_pct(), 0, 100));
  RETURN_IF_ERROR(IntRange(absl::StrCat(field, ".temperature_c"),
                           g.temperature_c(), kMinTemperatureC,
                           kMaxTemperatureC));
  RETURN_IF_ERROR(IntRange(absl::StrCat(field, ".power_limit_mw"),
                           g.power_limit_mw(), 0, kMaxPowerMw));
  const uint64_t total = g.memory_total_bytes();
  if (total > kMaxGpuMemoryBytes) {
    return Bad(absl::StrCat(field, ".memory_total_bytes"), "at most 16 TiB");
  }
  if (g.memory_used_bytes() > (total > 0 ? total : kMaxGpuMemoryBytes)) {
    return Bad(absl::StrCat(field, ".memory_used_bytes"),
               "must be at most memory_total_bytes");
  }
  RETURN_IF_ERROR(
      Text(absl::StrCat(field, ".health_detail"), g.health_detail()));
  RETURN_IF_ERROR(Text(absl::StrCat(field, ".uuid"), g.uuid(), kMaxNameBytes));
  RETURN_IF_ERROR(
      Text(absl::StrCat(field, ".model"), g.model(), kMaxNameBytes));
  return absl::OkStatus();
}

}  // namespace joule::daemon::validation
