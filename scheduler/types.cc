#include "scheduler/types.h"

namespace joule::scheduler {

const char* ServiceClassName(ServiceClass cls) {
  switch (cls) {
    case ServiceClass::kReserved:
      return "reserved";
    case ServiceClass::kOnDemand:
      return "on-demand";
    case ServiceClass::kSpot:
      return "spot";
  }
  return "unknown";
}

}  // namespace joule::scheduler
