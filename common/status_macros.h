#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Early-return helpers for absl::Status / absl::StatusOr.
#define JOULE_CONCAT_INNER_(a, b) a##b
#define JOULE_CONCAT_(a, b) JOULE_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status joule_status_ = (expr);         \
    if (!joule_status_.ok()) return joule_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(JOULE_CONCAT_(joule_statusor_, __LINE__), lhs, expr)
