#include "cli/session_path.h"

#include <errno.h>
#include <sys/stat.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace joule::cli {

std::string DefaultSessionSocket(const std::string& xdg_runtime_dir,
                                 uid_t uid) {
  if (absl::StartsWith(xdg_runtime_dir, "/")) {
    return absl::StrCat(xdg_runtime_dir, "/joule/session.sock");
  }
  return absl::StrCat("/tmp/joule-", uid, "/session.sock");
}

std::string AbsolutePath(const std::string& cwd, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  if (!cwd.empty() && cwd.back() == '/') return absl::StrCat(cwd, path);
  return absl::StrCat(cwd, "/", path);
}

std::string SocketDir(const std::string& socket_path) {
  const size_t slash = socket_path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return socket_path.substr(0, slash);
}

absl::Status CheckPrivateDirStat(const std::string& dir, bool is_dir,
                                 bool is_link, uid_t owner, mode_t mode,
                                 uid_t uid) {
  if (is_link) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session directory ", dir, " is a symbolic link; want a directory"));
  }
  if (!is_dir) {
    return absl::FailedPreconditionError(
        absl::StrCat("session directory ", dir, " is not a directory"));
  }
  if (owner != uid) {
    return absl::FailedPreconditionError(
        absl::StrCat("session directory ", dir, " is owned by uid ", owner,
                     ", not by you (uid ", uid, ")"));
  }
  if ((mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "session directory %s has mode %04o; want no group or other "
        "permissions (chmod 700 %s)",
        dir, mode & 07777, dir));
  }
  return absl::OkStatus();
}

absl::Status EnsurePrivateDir(const std::string& dir, uid_t uid, bool create) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT || !create) {
      return absl::FailedPreconditionError(
          absl::StrCat("session directory ", dir, ": ", std::strerror(errno)));
    }
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot create session directory ", dir, ": ", std::strerror(errno)));
    }
    if (lstat(dir.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("session directory ", dir, ": ", std::strerror(errno)));
    }
  }
  return CheckPrivateDirStat(dir, S_ISDIR(st.st_mode), S_ISLNK(st.st_mode),
                             st.st_uid, st.st_mode, uid);
}

absl::Status CheckSessionSocket(const std::string& path, uid_t uid) {
  const std::string dir = SocketDir(path);
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return absl::OkStatus();
  if (absl::Status s =
          CheckPrivateDirStat(dir, S_ISDIR(st.st_mode), S_ISLNK(st.st_mode),
                              st.st_uid, st.st_mode, uid);
      !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("JOULE_SESSION ", path, ": ", s.message()));
  }
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("JOULE_SESSION ", path, " is not a socket"));
  }
  if (st.st_uid != uid) {
    return absl::FailedPreconditionError(
        absl::StrCat("JOULE_SESSION ", path, " is owned by uid ", st.st_uid,
                     ", not by you (uid ", uid, ")"));
  }
  return absl::OkStatus();
}

std::string SessionToUse(const std::string& joule_session,
                         bool explicit_transport) {
  if (explicit_transport) return "";
  return joule_session;
}

std::string SessionEvalLine(const std::string& socket_path) {
  return absl::StrCat("JOULE_SESSION='",
                      absl::StrReplaceAll(socket_path, {{"'", "'\\''"}}),
                      "'; export JOULE_SESSION;");
}

}  // namespace joule::cli
