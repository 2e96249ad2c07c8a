#pragma once

// Internal helpers of billing::Ledger shared by its .cc files (keys, pricing
// model names, small checks). Not part of the public API: only the
// ledger*.cc files include it.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "billing/rating.h"
#include "billing/strings.h"
#include "google/protobuf/timestamp.pb.h"
#include "joule/v1/joule.pb.h"

namespace joule::billing {

inline constexpr std::string_view kSep("\0", 1);
inline constexpr std::string_view kFinalizedPrefix = "billing/finalized/";
// meta `billing/future/<usage key>` -> Unix seconds: a future-dated event
// that a later price change may still re-rate.
inline constexpr std::string_view kFuturePrefix = "billing/future/";
inline constexpr absl::Duration kMaxFutureSkew = absl::Minutes(5);

// Pricing models, in statement order.
inline constexpr std::string_view kReserved = "reserved";
inline constexpr std::string_view kReservedOverage = "reserved-overage";
inline constexpr std::string_view kOnDemand = "on-demand";
inline constexpr std::string_view kSpot = "spot";
inline constexpr std::string_view kInference = "inference";
inline constexpr std::string_view kEnergy = "energy";

inline int PricingOrder(std::string_view pm) {
  constexpr std::string_view kOrder[] = {kReserved, kReservedOverage, kOnDemand,
                                         kSpot,     kInference,       kEnergy};
  for (int i = 0; i < 6; ++i) {
    if (kOrder[i] == pm) return i;
  }
  return 6;
}

inline std::string_view ClassName(v1::ServiceClass c) {
  switch (c) {
    case v1::SERVICE_CLASS_RESERVED:
      return kReserved;
    case v1::SERVICE_CLASS_ON_DEMAND:
      return kOnDemand;
    case v1::SERVICE_CLASS_SPOT:
      return kSpot;
    default:
      return "unspecified";
  }
}

inline bool IsUnset(const google::protobuf::Timestamp& ts) {
  return ts.seconds() == 0 && ts.nanos() == 0;
}

// Rate keys: the card's tenant (empty: list price), then the item.
inline std::string GpuKey(std::string_view tenant, std::string_view model,
                          v1::ServiceClass cls) {
  return Cat(tenant, kSep, model, kSep, static_cast<int>(cls));
}
inline std::string InfKey(std::string_view tenant, std::string_view model) {
  return Cat(tenant, kSep, model);
}
inline std::string VersionKey(uint64_t v) {
  std::string s(20, '0');  // zero-padded: keys sort by version
  for (int i = 19; i >= 0 && v > 0; --i, v /= 10) s[i] = '0' + v % 10;
  return s;
}
// Idempotency scope: (tenant, source principal). Keys stored before the
// source existed (`tenant \0 key`) are migrated by Load to source
// "operator".
inline std::string UsageKey(std::string_view tenant, std::string_view source,
                            std::string_view key) {
  return Cat(tenant, kSep, source, kSep, key);
}
inline std::string AggKey(std::string_view tenant, std::string_view booking,
                          std::string_view origin, std::string_view model,
                          uint64_t version) {
  return Cat("i", kSep, tenant, kSep, booking, kSep, origin, kSep, model, kSep,
             VersionKey(version));
}
inline std::string StatementIndexKey(std::string_view tenant,
                                     std::string_view period) {
  return Cat(tenant, kSep, period);
}
inline std::string MonthlyKey(std::string_view tenant, std::string_view model,
                              std::string_view origin,
                              std::string_view direction) {
  return Cat(tenant, kSep, model, kSep, origin, kSep, direction);
}
inline std::string JobKey(std::string_view job_id, uint32_t attempt) {
  return Cat(job_id, kSep, absl::StrFormat("%010d", attempt));
}
inline std::string StoredStatementKey(std::string_view period,
                                      std::string_view tenant) {
  return Cat(period, kSep, tenant);
}

// Upper bound of the inference amount of one (tenant, month, model) in
// micro-dollars: in x max_in / 1M + out x max_out / 1M + requests x max_req.
inline __int128 InferenceBound(uint64_t in, uint64_t out, uint64_t requests,
                               int64_t max_in, int64_t max_out,
                               int64_t max_req) {
  return (static_cast<__int128>(in) * max_in +
          static_cast<__int128>(out) * max_out) /
             kTokensPerPriceUnit +
         static_cast<__int128>(requests) * max_req;
}

inline absl::Status DataLoss(std::string_view table, std::string_view key) {
  return absl::DataLossError(
      Cat("billing: cannot parse record in table ", table, " key ",
          absl::CHexEscape(absl::string_view(key.data(), key.size()))));
}

}  // namespace joule::billing
