#include "agent/cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/resources.h"

namespace joule::agent {
namespace {

bool Exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}
bool Writable(const std::string& path) {
  return ::access(path.c_str(), W_OK) == 0;
}

std::string ReadLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// Makes `dir` (and accepts one that exists: an earlier run of this agent).
bool MakeDir(const std::string& dir) {
  return ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST;
}

bool HasWord(const std::string& line, absl::string_view word) {
  for (absl::string_view w : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    if (w == word) return true;
  }
  return false;
}

// Creates the agent's cgroup `parent`/`name`; returns it, or "" with
// `s->why_none` saying why not.
std::string MakeAgentDir(const std::string& parent, const std::string& name,
                         CgroupSetup* s) {
  if (!Writable(parent)) {
    s->why_none = absl::StrCat(parent, " is not writable");
    return "";
  }
  const std::string dir = absl::StrCat(parent, "/", name);
  if (!MakeDir(dir)) {
    s->why_none =
        absl::StrCat("cannot create ", dir, ": ", std::strerror(errno));
    return "";
  }
  return dir;
}

}  // namespace

std::string CgroupSetup::Describe() const {
  if (kind == "none") {
    return absl::StrCat(
        "job isolation: NO cgroup (", why_none,
        "): jobs run in their own process group only; memory and CPU "
        "limits are NOT enforced");
  }
  std::vector<std::string> limits;
  if (memory) limits.push_back("memory");
  if (cpu) limits.push_back("cpu");
  return absl::StrCat(
      "job isolation: cgroup ", kind, " (", v2_dir,
      v1_dirs.empty() ? "" : absl::StrCat(", ", absl::StrJoin(v1_dirs, ", ")),
      "); limits enforced: ",
      limits.empty() ? "NONE (no memory or cpu controller available)"
                     : absl::StrJoin(limits, ", "));
}

CgroupSetup DetectCgroups(const std::string& root, const std::string& node) {
  CgroupSetup s;
  const std::string name = "joule-agent-" + node;
  if (Exists(root + "/cgroup.controllers")) {
    // Pure v2: the controllers the kernel offers are listed at the root.
    const std::string dir = MakeAgentDir(root, name, &s);
    if (dir.empty()) return s;
    s.kind = "v2";
    s.v2_dir = dir;
    const std::string offered = ReadLine(root + "/cgroup.controllers");
    for (const char* c : {"memory", "cpu"}) {
      if (!HasWord(offered, c)) continue;
      // Enabled for the root's children, then for this agent's children.
      bool ok = true;
      for (const std::string& parent : {root, dir}) {
        std::ofstream f(parent + "/cgroup.subtree_control");
        f << "+" << c;
        f.flush();
        ok = ok && f.good();
      }
      ok = ok && HasWord(ReadLine(dir + "/cgroup.subtree_control"), c);
      if (std::string_view(c) == "memory") s.memory = ok;
      if (std::string_view(c) == "cpu") s.cpu = ok;
    }
    return s;
  }
  const std::string unified = root + "/unified";
  if (!Exists(unified + "/cgroup.controllers")) {
    s.why_none =
        absl::StrCat("no cgroup v2 hierarchy at ", root, " or ", unified);
    return s;
  }
  const std::string dir = MakeAgentDir(unified, name, &s);
  if (dir.empty()) return s;
  s.kind = "hybrid";
  s.v2_dir = dir;
  // The v1 hierarchies of the two controllers ("cpu" may be mounted as
  // "cpu,cpuacct" with a "cpu" link to it).
  for (auto [sub, file, flag] :
       {std::tuple<const char*, const char*, bool*>{
            "memory", "memory.limit_in_bytes", &s.memory},
        {"cpu", "cpu.cfs_quota_us", &s.cpu}}) {
    const std::string v1 = absl::StrCat(root, "/", sub);
    if (!Exists(absl::StrCat(v1, "/", file)) || !Writable(v1)) continue;
    const std::string d = absl::StrCat(v1, "/", name);
    if (!MakeDir(d)) continue;
    s.v1_dirs.push_back(d);
    *flag = true;
  }
  return s;
}

CgroupSetup ExplicitCgroupRoot(const std::string& dir) {
  CgroupSetup s;
  if (!MakeDir(dir)) {
    s.why_none =
        absl::StrCat("cannot create ", dir, ": ", std::strerror(errno));
    return s;
  }
  s.kind = "v2";
  s.v2_dir = dir;
  const std::string enabled = ReadLine(dir + "/cgroup.subtree_control");
  s.memory = HasWord(enabled, "memory");
  s.cpu = HasWord(enabled, "cpu");
  return s;
}

JobLimits EffectiveLimits(const JobLimits& requested,
                          const JobLimits& per_gpu_default, int64_t gpus) {
  JobLimits out = requested;
  if (out.memory_bytes == 0 && per_gpu_default.memory_bytes > 0 && gpus > 0) {
    out.memory_bytes =
        std::min(kMaxJobMemoryBytes, per_gpu_default.memory_bytes * gpus);
  }
  if (out.cpu_millis == 0 && per_gpu_default.cpu_millis > 0 && gpus > 0) {
    out.cpu_millis =
        std::min(kMaxJobCpuMillis, per_gpu_default.cpu_millis * gpus);
  }
  return out;
}

std::string EnforceableLimits(const JobLimits& limits, bool can_memory,
                              bool can_cpu, const std::string& isolation,
                              JobLimits* enforced) {
  *enforced = {};
  std::vector<std::string> lost;
  if (limits.memory_bytes > 0) {
    if (can_memory) {
      enforced->memory_bytes = limits.memory_bytes;
    } else {
      lost.push_back(
          absl::StrCat("memory ", FormatMemoryBytes(limits.memory_bytes)));
    }
  }
  if (limits.cpu_millis > 0) {
    if (can_cpu) {
      enforced->cpu_millis = limits.cpu_millis;
    } else {
      lost.push_back(absl::StrCat("cpus ", FormatCpuMillis(limits.cpu_millis)));
    }
  }
  if (lost.empty()) return "";
  return absl::StrCat("limits NOT enforced on this node: ",
                      absl::StrJoin(lost, ", "), " (", isolation, ")");
}

std::vector<std::pair<std::string, std::string>> LimitWrites(
    const std::string& dir, const JobLimits& limits, bool* memory_written,
    bool* cpu_written) {
  std::vector<std::pair<std::string, std::string>> out;
  *memory_written = false;
  *cpu_written = false;
  constexpr int64_t kPeriodUs = 100000;  // 100 ms, the kernel's default
  if (limits.memory_bytes > 0) {
    if (Exists(dir + "/memory.max")) {  // v2
      out.emplace_back(dir + "/memory.max", absl::StrCat(limits.memory_bytes));
      // No swap beyond the limit where the kernel has swap accounting.
      if (Exists(dir + "/memory.swap.max")) {
        out.emplace_back(dir + "/memory.swap.max", "0");
      }
      *memory_written = true;
    } else if (Exists(dir + "/memory.limit_in_bytes")) {  // v1
      out.emplace_back(dir + "/memory.limit_in_bytes",
                       absl::StrCat(limits.memory_bytes));
      *memory_written = true;
    }
  }
  if (limits.cpu_millis > 0) {
    const int64_t quota_us = limits.cpu_millis * kPeriodUs / 1000;
    if (Exists(dir + "/cpu.max")) {  // v2: "QUOTA PERIOD"
      out.emplace_back(dir + "/cpu.max",
                       absl::StrCat(quota_us, " ", kPeriodUs));
      *cpu_written = true;
    } else if (Exists(dir + "/cpu.cfs_quota_us")) {  // v1
      out.emplace_back(dir + "/cpu.cfs_period_us", absl::StrCat(kPeriodUs));
      out.emplace_back(dir + "/cpu.cfs_quota_us", absl::StrCat(quota_us));
      *cpu_written = true;
    }
  }
  return out;
}

}  // namespace joule::agent
