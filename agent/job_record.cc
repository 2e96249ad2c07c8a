#include "agent/job_record.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace joule::agent {

namespace {
bool Digits(absl::string_view s, size_t most) {
  if (s.empty() || s.size() > most) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}
}  // namespace

bool ValidJobId(absl::string_view id) {
  if (!absl::ConsumePrefix(&id, "job-")) return false;
  const size_t us = id.find('_');
  if (us == absl::string_view::npos) return Digits(id, 19);
  return Digits(id.substr(0, us), 19) && Digits(id.substr(us + 1), 10);
}

bool ArrayTaskOf(absl::string_view id, std::string* array_id,
                 std::string* index) {
  if (!ValidJobId(id)) return false;
  const size_t us = id.find('_');
  if (us == absl::string_view::npos) return false;
  *array_id = std::string(id.substr(0, us));
  *index = std::string(id.substr(us + 1));
  return true;
}

std::string AttemptPath(const std::string& dir, const std::string& job_id,
                        uint32_t attempt, absl::string_view suffix) {
  return absl::StrCat(dir, "/", job_id, ".", attempt, suffix);
}

absl::Status WriteRecord(const std::string& path, const Record& rec,
                         Durability durability) {
  std::string text;
  for (const auto& [k, v] : rec) absl::StrAppend(&text, k, "=", v, "\n");
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  const int fd = ::open(
      tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  const ssize_t n = ::write(fd, text.data(), text.size());
  const bool ok =
      n == static_cast<ssize_t>(text.size()) &&
      (durability == Durability::kProcessCrashOnly || ::fsync(fd) == 0);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Record> ReadRecord(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path);
    return absl::InternalError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 && text.size() < 65536) {
    text.append(buf, n);
  }
  ::close(fd);
  Record rec;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    rec[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return rec;
}

int64_t RecordInt(const Record& rec, const std::string& key, int64_t dflt) {
  auto it = rec.find(key);
  int64_t v = 0;
  if (it == rec.end() || !absl::SimpleAtoi(it->second, &v)) return dflt;
  return v;
}

absl::Status MakePrivateDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("directory: empty path");
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create ", part, ": ", std::strerror(errno)));
    }
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": not a directory (a symlink is refused)"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": owned by uid ", st.st_uid, ", not by the agent"));
  }
  ::chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

bool IsSupervisor(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return false;
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"), std::ios::binary);
  std::string cmd((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  const std::string arg0 = cmd.substr(0, cmd.find('\0'));
  constexpr absl::string_view kName = "joule-job-supervisor";
  return absl::EndsWith(arg0, kName);
}

}  // namespace joule::agent
