#include "scheduler/power_options.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace joule::scheduler {

absl::StatusOr<int64_t> ParseSharePermille(absl::string_view text) {
  double v = -1;
  if (!absl::SimpleAtod(text, &v) || !(v >= 0 && v <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a share in [0, 1]"));
  }
  return static_cast<int64_t>(v * 1000 + 0.5);
}

absl::StatusOr<ClassFloors> ParseClassFloors(absl::string_view spec,
                                             ClassFloors defaults) {
  if (spec.empty()) return defaults;
  if (spec == "off") {
    defaults.enabled = false;
    return defaults;
  }
  ClassFloors out = defaults;
  for (absl::string_view kv : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    absl::StatusOr<int64_t> permille = ParseSharePermille(p.second);
    if (!permille.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", kv, "\": the share must be in [0, 1]"));
    }
    if (p.first == "reserved") {
      out.reserved_permille = *permille;
    } else if (p.first == "on-demand") {
      out.on_demand_permille = *permille;
    } else if (p.first == "spot") {
      out.spot_permille = *permille;
    } else if (p.first == "reserved-start") {
      out.reserved_start_permille = *permille;
    } else if (p.first == "on-demand-start") {
      out.on_demand_start_permille = *permille;
    } else if (p.first == "spot-start") {
      out.spot_start_permille = *permille;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", p.first,
          "\" is not reserved, on-demand or spot (or one of them with "
          "-start)"));
    }
  }
  out.enabled = true;
  return out;
}

int64_t EfficiencyLimitMw(int64_t limit_mw, int64_t model_min_mw,
                          int64_t knee_permille) {
  if (limit_mw <= model_min_mw) return limit_mw;
  knee_permille = std::clamp<int64_t>(knee_permille, 0, 1000);
  // limit / 1000 × permille + remainder: exact without overflow.
  const int64_t knee =
      limit_mw / 1000 * knee_permille + limit_mw % 1000 * knee_permille / 1000;
  return std::clamp(knee, model_min_mw, limit_mw);
}

std::optional<MeasuredCommitRule> ParsePlusCommit(absl::string_view name) {
  if (name == "percentile") return MeasuredPlusRule();
  if (name == "floor-clamp") return FloorClampRule();
  return std::nullopt;
}

absl::string_view PlusCommitName(MeasuredCommitRule::Kind kind) {
  return kind == MeasuredCommitRule::kFloorClamp ? "floor-clamp" : "percentile";
}

}  // namespace joule::scheduler
