#include "auth/tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/authz_table.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::auth {
namespace {

constexpr size_t kIdBytes = 8;       // 16 hex digits
constexpr size_t kSecretBytes = 32;  // 64 hex digits
constexpr size_t kSaltBytes = 16;
constexpr absl::Duration kMaxLifetime = absl::Hours(24 * 3650);

std::string Sha256(absl::string_view salt, absl::string_view secret) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, salt.data(), salt.size());
  EVP_DigestUpdate(ctx, secret.data(), secret.size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(md), len);
}

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

absl::Status ValidNodeOrTenant(absl::string_view field, absl::string_view v) {
  if (v.empty() || v.size() > 128 || v == "." || v == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1..128 bytes, not . or .."));
  }
  for (char c : v) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": may contain only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

RandomBytesFn SecureRandomBytes() {
  return [](size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                   static_cast<int>(n)) != 1) {
      // No entropy: refuse to mint credentials rather than mint weak ones.
      abort();
    }
    return out;
  };
}

bool SplitBearer(absl::string_view bearer, std::string* id,
                 std::string* secret) {
  if (!absl::StartsWith(bearer, "jt_")) return false;
  const size_t dot = bearer.find('.');
  if (dot != 3 + 2 * kIdBytes) return false;
  const absl::string_view hex_id = bearer.substr(3, 2 * kIdBytes);
  const absl::string_view sec = bearer.substr(dot + 1);
  if (sec.size() != 2 * kSecretBytes || !IsHex(hex_id) || !IsHex(sec)) {
    return false;
  }
  *id = std::string(bearer.substr(0, dot));
  *secret = std::string(sec);
  return true;
}

TokenBook::TokenBook(TokenBookOptions options) : options_(std::move(options)) {}

absl::Status TokenBook::Load() {
  absl::MutexLock lock(&mu_);
  tokens_.clear();
  return options_.store->Scan(storage::kTokens, "", [&](auto key, auto value) {
    v1::TokenRecord rec;
    if (rec.ParseFromString(std::string(value))) {
      tokens_[std::string(key)] = std::move(rec);
    }
    return true;
  });
}

absl::StatusOr<v1::CreateTokenResponse> TokenBook::Create(
    const v1::CreateTokenRequest& req, const std::string& created_by,
    const std::function<bool(absl::string_view)>& tenant_exists) {
  if (req.role() == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(req.role())) {
    return absl::InvalidArgumentError(
        "role: must be one of operator, finance, metering, tenant, agent");
  }
  if (req.role() == v1::ROLE_TENANT) {
    RETURN_IF_ERROR(ValidNodeOrTenant("tenant", req.tenant()));
    if (!tenant_exists(req.tenant())) {
      return absl::NotFoundError(
          absl::StrCat("tenant: \"", req.tenant(), "\" is not a tenant"));
    }
  } else if (!req.tenant().empty()) {
    return absl::InvalidArgumentError(
        "tenant: only a token of role tenant is bound to a tenant");
  }
  if (req.role() == v1::ROLE_AGENT) {
    RETURN_IF_ERROR(ValidNodeOrTenant("node", req.node()));
  } else if (!req.node().empty()) {
    return absl::InvalidArgumentError(
        "node: only a token of role agent is bound to a node");
  }
  if (req.name().size() > 128) {
    return absl::InvalidArgumentError("name: must be at most 128 bytes");
  }
  for (char c : req.name()) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "name: must not contain control characters");
    }
  }
  const absl::Duration ttl = FromProtoDuration(req.expires_in());
  if (ttl < absl::ZeroDuration() || ttl > kMaxLifetime) {
    return absl::InvalidArgumentError(
        "expires_in: must be within 0 (never) .. 3650 days");
  }
  absl::MutexLock lock(&mu_);
  return CreateLocked(req, created_by);
}

absl::StatusOr<v1::CreateTokenResponse> TokenBook::CreateLocked(
    const v1::CreateTokenRequest& req, const std::string& created_by) {
  RandomBytesFn random =
      options_.random ? options_.random : SecureRandomBytes();
  std::string id;
  do {
    id = absl::StrCat("jt_", absl::BytesToHexString(random(kIdBytes)));
  } while (tokens_.contains(id));
  const std::string secret = absl::BytesToHexString(random(kSecretBytes));
  const absl::Time now = options_.clock->Now();
  v1::TokenRecord rec;
  v1::Token& t = *rec.mutable_token();
  t.set_id(id);
  t.set_name(req.name());
  t.set_role(req.role());
  t.set_tenant(req.tenant());
  t.set_node(req.node());
  *t.mutable_created_time() = ToProtoTime(now);
  const absl::Duration ttl = FromProtoDuration(req.expires_in());
  if (ttl > absl::ZeroDuration()) {
    *t.mutable_expires_time() = ToProtoTime(now + ttl);
  }
  t.set_created_by(created_by);
  rec.set_salt(random(kSaltBytes));
  rec.set_secret_sha256(Sha256(rec.salt(), secret));
  RETURN_IF_ERROR(options_.store->Put(storage::kTokens, id,
                                      rec.SerializeAsString(), {.sync = true}));
  tokens_[id] = rec;
  v1::CreateTokenResponse resp;
  *resp.mutable_token() = t;
  resp.set_secret(absl::StrCat(id, ".", secret));
  return resp;
}

absl::StatusOr<v1::Token> TokenBook::Verify(absl::string_view bearer) const {
  std::string id, secret;
  if (!SplitBearer(bearer, &id, &secret)) {
    return absl::UnauthenticatedError(
        "token: malformed (want jt_<16 hex>.<64 hex>)");
  }
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) {
    return absl::UnauthenticatedError(absl::StrCat("token ", id, ": unknown"));
  }
  const v1::TokenRecord& rec = it->second;
  const std::string hash = Sha256(rec.salt(), secret);
  if (hash.size() != rec.secret_sha256().size() ||
      CRYPTO_memcmp(hash.data(), rec.secret_sha256().data(), hash.size()) !=
          0) {
    return absl::UnauthenticatedError(
        absl::StrCat("token ", id, ": wrong secret"));
  }
  if (rec.token().revoked()) {
    return absl::UnauthenticatedError(absl::StrCat("token ", id, ": revoked"));
  }
  if (IsSet(rec.token().expires_time()) &&
      options_.clock->Now() >= FromProtoTime(rec.token().expires_time())) {
    return absl::UnauthenticatedError(absl::StrCat("token ", id, ": expired"));
  }
  return rec.token();
}

std::vector<v1::Token> TokenBook::List(bool include_revoked) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Token> out;
  for (const auto& [id, rec] : tokens_) {
    if (rec.token().revoked() && !include_revoked) continue;
    out.push_back(rec.token());
  }
  return out;
}

absl::StatusOr<v1::Token> TokenBook::Revoke(absl::string_view id_view) {
  const std::string id(id_view);
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no token \"", id, "\""));
  }
  v1::TokenRecord rec = it->second;
  if (rec.token().revoked()) return rec.token();
  rec.mutable_token()->set_revoked(true);
  *rec.mutable_token()->mutable_revoked_time() =
      ToProtoTime(options_.clock->Now());
  RETURN_IF_ERROR(options_.store->Put(storage::kTokens, id,
                                      rec.SerializeAsString(), {.sync = true}));
  it->second = rec;
  return rec.token();
}

absl::StatusOr<std::optional<std::string>> TokenBook::Bootstrap() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  for (const auto& [id, rec] : tokens_) {
    const v1::Token& t = rec.token();
    if (t.role() == v1::ROLE_OPERATOR && !t.revoked() &&
        (!IsSet(t.expires_time()) || FromProtoTime(t.expires_time()) > now)) {
      return std::optional<std::string>();
    }
  }
  v1::CreateTokenRequest req;
  req.set_role(v1::ROLE_OPERATOR);
  req.set_name("bootstrap");
  ASSIGN_OR_RETURN(v1::CreateTokenResponse r, CreateLocked(req, "jouled"));
  return std::optional<std::string>(r.secret());
}

}  // namespace joule::auth
