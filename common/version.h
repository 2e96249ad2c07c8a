#pragma once

// The version every Joule binary prints for --version.

namespace joule {

// "0.1.0": the CMake project version (common/CMakeLists.txt compiles it into
// version.cc alone, so changing it rebuilds one file).
const char* Version();

}  // namespace joule
