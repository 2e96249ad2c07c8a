#include "cli/power_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace joule::cli {

std::string EfficiencyKneeText(const v1::Job& j) {
  if (j.spec().power_mode() != v1::POWER_MODE_EFFICIENCY ||
      !j.has_efficiency_knee()) {
    return "";
  }
  const v1::EfficiencyKnee& k = j.efficiency_knee();
  std::string out = absl::StrFormat("%.2f of its limit over idle, ",
                                    k.share_permille() / 1000.0);
  if (k.learned()) {
    absl::StrAppend(&out, "learned from ", k.samples(), " samples of ",
                    k.workload());
  } else {
    absl::StrAppend(&out, "the config's efficiency_knee (", k.workload(), ": ",
                    k.samples(), " samples, not enough to learn yet)");
  }
  return out;
}

}  // namespace joule::cli
