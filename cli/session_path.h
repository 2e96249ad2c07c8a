#pragma once

// The pure parts of joulectl's resident session (cli/session.h): where its
// socket lives, whether that directory is private, and when a command goes
// through a session instead of dialling jouled itself. docs/cli.md
// "Sessions", docs/security.md "The session socket".

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace joule::cli {

// The default socket: $XDG_RUNTIME_DIR/joule/session.sock when
// `xdg_runtime_dir` is an absolute path, else /tmp/joule-UID/session.sock
// (the XDG spec: a relative value is ignored).
std::string DefaultSessionSocket(const std::string& xdg_runtime_dir, uid_t uid);

// `path` made absolute against `cwd` (unchanged when empty or absolute): a
// session outlives the directory it was started in (it chdir()s to /), and
// the JOULE_SESSION it prints is used from anywhere.
std::string AbsolutePath(const std::string& cwd, const std::string& path);

// The directory part of a socket path ("." for a bare name).
std::string SocketDir(const std::string& socket_path);

// What a socket directory must be: a real directory (not a link), owned by
// `uid`, with no group or other permission bits. OK, or
// FAILED_PRECONDITION with one line naming `dir` and what is wrong. The
// values are passed in (from lstat) so the rule is testable on its own.
absl::Status CheckPrivateDirStat(const std::string& dir, bool is_dir,
                                 bool is_link, uid_t owner, mode_t mode,
                                 uid_t uid);

// lstat()s `dir` and applies CheckPrivateDirStat; creates it 0700 first
// (one level: its parent must exist) when `create` and it is missing.
absl::Status EnsurePrivateDir(const std::string& dir, uid_t uid, bool create);

// What a joulectl checks before it sends a call to the session at `path`
// (another user must not be able to pose as one): where the directory or
// the socket exists, the directory passes CheckPrivateDirStat and the
// socket is a socket owned by `uid`. FAILED_PRECONDITION with one line;
// OK when either is missing (the call then fails as "no session").
absl::Status CheckSessionSocket(const std::string& path, uid_t uid);

// The socket a command goes through: `joule_session` ($JOULE_SESSION) when
// it is set and the command line named none of --server, --token,
// --token-file, --ca, --insecure (`explicit_transport`); else empty (dial
// jouled directly).
std::string SessionToUse(const std::string& joule_session,
                         bool explicit_transport);

// The line `session start` prints for eval: JOULE_SESSION=PATH; export ...
// with PATH single-quoted for the shell.
std::string SessionEvalLine(const std::string& socket_path);

}  // namespace joule::cli
