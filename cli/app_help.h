#pragma once

// joulectl's command-line habits that need the CLI11 command tree: usage for
// `joulectl`, `joulectl help [NOUN]` and a bare noun, the nearest command
// for a typo, and bash completion generated from the same tree (so it never
// goes stale). Pure functions of the tree; not thread-safe (CLI11 isn't).

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace joule::cli {

// Levenshtein distance (insert, delete, substitute: 1 each).
size_t EditDistance(const std::string& a, const std::string& b);

// The command ("node list", or "node" for a noun) nearest to what the user
// typed: `words` are the non-option words of argv in order. Empty when
// nothing is near (distance over a third of the length, at least 2).
std::string NearestCommand(const CLI::App& app,
                           const std::vector<std::string>& words);

// The non-option words of argv[1..], skipping the values of `app`'s own
// options that take one (`--server X`, `-o json`), and stopping at `--`.
std::vector<std::string> CommandWords(const CLI::App& app, int argc,
                                      char** argv);

// A bash completion script for `app` (complete -F): nouns, then verbs, then
// the flags of the command typed so far; values of -o/--output.
std::string BashCompletion(const CLI::App& app);

}  // namespace joule::cli
