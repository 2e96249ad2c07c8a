#pragma once

// A whole file as a string, for the agent tests (agent_test is one binary
// of several files): empty when it cannot be read.

#include <fstream>
#include <iterator>
#include <string>

namespace joule::agent_test {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

}  // namespace joule::agent_test
