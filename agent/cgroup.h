#pragma once

// Where joule-agent puts its jobs' cgroups, and the memory and CPU limits it
// writes into them (docs/security.md, "Node isolation").

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace joule::agent {

// The cgroup dirs of one agent, found once at start by DetectCgroups. Each
// job attempt gets a child `<dir>/<job>.<attempt>` of `v2_dir`, and of each
// of `v1_dirs` whose controller holds a limit the job has, made and removed
// by its joule-job-supervisor (the job's first process is born in the v2
// one).
//   v2:     a pure cgroup v2 hierarchy: `v2_dir` tracks the job's processes
//           (cgroup.kill) and holds memory.max / cpu.max where the memory
//           and cpu controllers are enabled for it.
//   hybrid: v2 mounted at <root>/unified (no controllers there: they are
//           bound to v1): `v2_dir` tracks the processes, and the v1
//           memory and cpu hierarchies (`v1_dirs`) hold
//           memory.limit_in_bytes and cpu.cfs_quota_us (a job without a
//           limit of one stays in the agent's own cgroup of it).
//   none:   no writable hierarchy; jobs run in their process group only,
//           without limits (`why_none` says why; the agent logs it).
// A plain value; the dirs are created (0755) by DetectCgroups.
struct CgroupSetup {
  std::string kind = "none";  // "v2", "hybrid" or "none"
  std::string v2_dir;
  std::vector<std::string> v1_dirs;  // hybrid: memory and cpu parents
  bool memory = false;               // memory limits can be enforced
  bool cpu = false;                  // CPU limits can be enforced
  std::string why_none;
  // One line for the agent's log: what is tracked, what can be limited.
  std::string Describe() const;
};

// Looks at `root` (normally /sys/fs/cgroup) and makes this agent's parent
// dirs `joule-agent-<node>` where it can write: pure v2 (root has
// cgroup.controllers; enables +memory +cpu for the children where the
// kernel offers them), else hybrid (root/unified/cgroup.controllers, plus
// root/memory and root/cpu v1 hierarchies where writable), else none.
CgroupSetup DetectCgroups(const std::string& root, const std::string& node);

// --cgroup-root DIR: a cgroup v2 dir given by the operator (made if
// missing); memory / cpu limits where DIR's cgroup.subtree_control enables
// them.
CgroupSetup ExplicitCgroupRoot(const std::string& dir);

// Limits of one job on one node: 0 = none.
struct JobLimits {
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;  // 1000 = one CPU
};

// The job's own limits where it asked for them, else the agent's per-GPU
// defaults times its GPUs on this node (0 = none). Pure.
JobLimits EffectiveLimits(const JobLimits& requested,
                          const JobLimits& per_gpu_default, int64_t gpus);

// The part of `limits` this node can enforce goes to `*enforced`; returns
// "" when that is all of it, else one line naming what is NOT enforced and
// why (`isolation`, CgroupSetup::Describe()). Pure.
std::string EnforceableLimits(const JobLimits& limits, bool can_memory,
                              bool can_cpu, const std::string& isolation,
                              JobLimits* enforced);

// The files and contents that set `limits` in the cgroup dir `dir` that
// already exists (v2: memory.max, cpu.max; v1: memory.limit_in_bytes,
// cpu.cfs_period_us + cpu.cfs_quota_us), chosen by which control files
// `dir` has. A limit of 0 writes nothing. Returns the writes in order and
// sets `*memory_written` / `*cpu_written` when a file of `dir` holds that
// limit. Reads the file system (which files exist), writes nothing.
std::vector<std::pair<std::string, std::string>> LimitWrites(
    const std::string& dir, const JobLimits& limits, bool* memory_written,
    bool* cpu_written);

}  // namespace joule::agent
