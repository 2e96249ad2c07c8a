#pragma once

// Command-line habits shared by every Joule binary (jouled, joule-agent,
// joulectl, joule-sim, joule-loadgen): `--version`, and exit code 2 with one
// line on stderr for any bad flag or value (CLI11's own error codes, 105 to
// 115, never leak). Header-only so that joule_common does not link CLI11.

#include <cstdio>
#include <functional>
#include <string>

#include "CLI/CLI.hpp"
#include "common/version.h"

namespace joule {

// Adds `--version` ("NAME VERSION" on stdout, exit 0) to `app`.
inline void AddVersionFlag(CLI::App& app, const std::string& name) {
  app.set_version_flag("--version", name + " " + Version(),
                       "print the version and exit");
}

// Parses argv into `app`. Returns -1 when the program should go on, else
// the exit code to return from main(): 0 after --help or --version, 2 after
// any parse or validation error (one line, "NAME: message", on stderr;
// `rewrite`, when given, may replace the message).
inline int ParseCommandLine(
    CLI::App& app, const std::string& name, int argc, char** argv,
    const std::function<std::string(const CLI::ParseError&)>& rewrite = {}) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::CallForAllHelp& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::ParseError& e) {
    const std::string message = rewrite ? rewrite(e) : std::string(e.what());
    std::fprintf(stderr, "%s: %s\n", name.c_str(), message.c_str());
    return 2;
  }
  return -1;
}

}  // namespace joule

// Drop-in for CLI11_PARSE: returns from main() with ParseCommandLine's code.
#define JOULE_CLI_PARSE(app, name, argc, argv)                    \
  do {                                                            \
    const int joule_parse_rc_ =                                   \
        ::joule::ParseCommandLine((app), (name), (argc), (argv)); \
    if (joule_parse_rc_ >= 0) return joule_parse_rc_;             \
  } while (0)
