#include "common/version.h"

#ifndef JOULE_VERSION
#define JOULE_VERSION "unknown"
#endif

namespace joule {

const char* Version() { return JOULE_VERSION; }

}  // namespace joule
