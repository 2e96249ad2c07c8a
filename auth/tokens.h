#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "joule/v1/auth.pb.h"
#include "storage/store.h"

namespace joule::auth {

// Random bytes for token ids, secrets and salts. Injected so that tests are
// deterministic; the default is OpenSSL's RAND_bytes.
using RandomBytesFn = std::function<std::string(size_t n)>;
RandomBytesFn SecureRandomBytes();

struct TokenBookOptions {
  storage::Store* store = nullptr;
  const Clock* clock = nullptr;
  RandomBytesFn random;  // empty: SecureRandomBytes()
};

// Owns the bearer tokens (table "tokens"). A token's secret is
// "jt_<16 hex id>.<64 hex secret>"; only the id, the salt and
// SHA-256(salt || secret) are stored, so the store never holds a usable
// credential. Invariants: ids are unique; a revoked token stays revoked;
// Verify accepts only an unrevoked, unexpired token whose secret hashes to
// the stored value (compared in constant time). Thread-safe (mu_); every
// change is written (synced) before it is visible.
class TokenBook {
 public:
  explicit TokenBook(TokenBookOptions options);

  absl::Status Load();

  // Creates a token and returns its secret (shown once). Validates the
  // request: role set; tenant given exactly for ROLE_TENANT (and
  // `tenant_exists` for it), node exactly for ROLE_AGENT; name at most 128
  // bytes of printable text; expires_in within (0, 10 years] or 0 (never).
  absl::StatusOr<v1::CreateTokenResponse> Create(
      const v1::CreateTokenRequest& req, const std::string& created_by,
      const std::function<bool(absl::string_view)>& tenant_exists);

  // The token that `bearer` is the secret of: UNAUTHENTICATED (saying why:
  // malformed, unknown, revoked, expired) otherwise.
  absl::StatusOr<v1::Token> Verify(absl::string_view bearer) const;

  std::vector<v1::Token> List(bool include_revoked) const;
  // Revokes at once: the next call with it is UNAUTHENTICATED.
  absl::StatusOr<v1::Token> Revoke(absl::string_view id);

  // When no valid (unrevoked, unexpired) operator token exists, e.g. on an
  // empty store: creates an operator token named "bootstrap" and returns
  // its secret; otherwise nullopt.
  absl::StatusOr<std::optional<std::string>> Bootstrap();

 private:
  absl::StatusOr<v1::CreateTokenResponse> CreateLocked(
      const v1::CreateTokenRequest& req, const std::string& created_by)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TokenBookOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, v1::TokenRecord, std::less<>> tokens_
      ABSL_GUARDED_BY(mu_);
};

// "jt_<id>.<secret>" split into the id ("jt_<id>") and the secret; false
// when `bearer` is not of that form.
bool SplitBearer(absl::string_view bearer, std::string* id,
                 std::string* secret);

}  // namespace joule::auth
