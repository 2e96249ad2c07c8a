#include "common/clock.h"

namespace joule {

RealClock& RealClock::Get() {
  static RealClock* clock = new RealClock();
  return *clock;
}

}  // namespace joule
