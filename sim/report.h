#pragma once

// joule-sim's outputs: the JSON report, the readable summary and an SVG
// chart comparing the policies of one invocation. Pure functions of the
// results.

#include <cstdint>
#include <string>
#include <vector>

#include "sim/simulator.h"
#include "sim/workload.h"

namespace joule::sim {

// What the run was: echoed in the report.
struct RunInfo {
  std::string cluster_source;  // e.g. "synthetic nodes=10000,..."
  int64_t nodes = 0;
  int64_t gpus = 0;
  int64_t domains = 0;
  std::string workload_source;
  ImportStats import;
  uint64_t seed = 0;
  SimOptions options;
  int64_t peak_rss_bytes = 0;  // runtime section only
};

// include_runtime = false leaves out the wall time, events/s and RSS (the
// only fields that differ between identical runs).
std::string ReportJson(const RunInfo& info,
                       const std::vector<SimResult>& results,
                       bool include_runtime);
std::string ReportText(const RunInfo& info,
                       const std::vector<SimResult>& results);
// Two panels: site power vs cap over time per policy, and key metrics per
// policy as bars.
std::string ReportSvg(const RunInfo& info,
                      const std::vector<SimResult>& results);

}  // namespace joule::sim
