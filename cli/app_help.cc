#include "cli/app_help.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace joule::cli {
namespace {

// Every "noun" and "noun verb" of the tree (hidden ones left out).
std::vector<std::string> Commands(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::App* noun : app.get_subcommands({})) {
    if (noun->get_group().empty()) continue;  // hidden
    out.push_back(noun->get_name());
    for (const CLI::App* verb : noun->get_subcommands({})) {
      if (verb->get_group().empty()) continue;
      out.push_back(absl::StrCat(noun->get_name(), " ", verb->get_name()));
    }
  }
  return out;
}

// The long and short flag names of `sub`'s options, e.g. "--tenant -o".
std::vector<std::string> Flags(const CLI::App& sub) {
  std::vector<std::string> out;
  for (const CLI::Option* o : sub.get_options()) {
    if (o->get_group().empty()) continue;
    for (const std::string& l : o->get_lnames()) out.push_back("--" + l);
    for (const std::string& s : o->get_snames()) out.push_back("-" + s);
  }
  return out;
}

}  // namespace

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                         prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string NearestCommand(const CLI::App& app,
                           const std::vector<std::string>& words) {
  if (words.empty()) return "";
  const std::vector<std::string> commands = Commands(app);
  // Two typed words are compared with "noun verb" commands first ("nod lst"
  // with "node list"), then the first word alone with the nouns.
  for (size_t n = std::min<size_t>(2, words.size()); n >= 1; --n) {
    const std::string typed = absl::StrJoin(
        std::vector<std::string>(words.begin(), words.begin() + n), " ");
    std::string best;
    size_t best_distance = SIZE_MAX;
    for (const std::string& c : commands) {
      if (static_cast<size_t>(std::count(c.begin(), c.end(), ' ')) + 1 != n) {
        continue;
      }
      const size_t d = EditDistance(typed, c);
      if (d < best_distance) {
        best = c;
        best_distance = d;
      }
    }
    if (!best.empty() &&
        best_distance <= std::max<size_t>(2, best.size() / 3)) {
      return best;
    }
  }
  return "";
}

std::vector<std::string> CommandWords(const CLI::App& app, int argc,
                                      char** argv) {
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      if (a.find('=') != std::string::npos) continue;
      // Skip the value of a global option that takes one.
      try {
        const CLI::Option* o = app.get_option_no_throw(a);
        if (o != nullptr && o->get_type_size() != 0 && i + 1 < argc) ++i;
      } catch (...) {
      }
      continue;
    }
    words.push_back(a);
  }
  return words;
}

std::string BashCompletion(const CLI::App& app) {
  std::string nouns;
  std::string cases;
  for (const CLI::App* noun : app.get_subcommands({})) {
    if (noun->get_group().empty()) continue;
    absl::StrAppend(&nouns, " ", noun->get_name());
    std::string verbs;
    for (const CLI::App* verb : noun->get_subcommands({})) {
      if (verb->get_group().empty()) continue;
      absl::StrAppend(&verbs, " ", verb->get_name());
      absl::StrAppend(&cases, "    \"", noun->get_name(), " ", verb->get_name(),
                      "\") flags=\"", absl::StrJoin(Flags(*verb), " "),
                      "\" ;;\n");
    }
    absl::StrAppend(&cases, "    \"", noun->get_name(), "\") verbs=\"",
                    absl::StripLeadingAsciiWhitespace(verbs), "\"; flags=\"",
                    absl::StrJoin(Flags(*noun), " "), "\" ;;\n");
  }
  const std::string globals = absl::StrJoin(Flags(app), " ");
  return absl::StrCat(
      "# bash completion for joulectl (generated: joulectl completion bash)\n"
      "_joulectl() {\n"
      "  local cur prev words cword\n"
      "  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
      "  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
      "  case \"$prev\" in\n"
      "    -o|--output) COMPREPLY=($(compgen -W \"table wide json yaml csv\" "
      "-- \"$cur\")); return ;;\n"
      "  esac\n"
      "  local cmd=() i w\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    w=\"${COMP_WORDS[i]}\"\n"
      "    [[ \"$w\" == \"--\" ]] && return\n"
      "    [[ \"$w\" == -* ]] && continue\n"
      "    cmd+=(\"$w\")\n"
      "  done\n"
      "  local verbs=\"\" flags=\"\"\n"
      "  case \"${cmd[*]:0:2}\" in\n",
      cases,
      "  esac\n"
      "  local g=\"",
      globals,
      "\"\n"
      "  if [[ \"$cur\" == -* ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$flags $g\" -- \"$cur\"))\n"
      "  elif [[ ${#cmd[@]} -eq 0 ]]; then\n"
      "    COMPREPLY=($(compgen -W \"",
      absl::StripLeadingAsciiWhitespace(nouns),
      "\" -- \"$cur\"))\n"
      "  elif [[ ${#cmd[@]} -eq 1 ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$verbs\" -- \"$cur\"))\n"
      "  fi\n"
      "}\n"
      "complete -F _joulectl joulectl\n");
}

}  // namespace joule::cli
