#pragma once

// joulectl's text for a job's power settings (issue 16). Pure; `job show`
// in main.cc prints what these return.

#include <string>

#include "joule/v1/joule.pb.h"

namespace joule::cli {

// For a job in power_mode EFFICIENCY, the knee it runs at (or, pending,
// would run at now): "0.42 of its limit over idle, learned from 240
// samples of acme/train/H100" or "0.50 of its limit over idle, the
// config's efficiency_knee (acme/train/H100: 12 samples, not enough to
// learn yet)"; empty for any other job or when the daemon sent none.
std::string EfficiencyKneeText(const v1::Job& j);

}  // namespace joule::cli
