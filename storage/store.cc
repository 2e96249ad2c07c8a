#include "storage/store.h"

namespace joule::storage {

std::vector<std::string> AllTables() {
  return {std::string(kNodes),      std::string(kJobs),
          std::string(kJobsIdem),   std::string(kEvents),
          std::string(kDomains),    std::string(kTenants),
          std::string(kMeta),       std::string(kPrices),
          std::string(kContracts),  std::string(kUsage),
          std::string(kUsageAgg),   std::string(kJobUsage),
          std::string(kStatements), std::string(kTokens),
          std::string(kAudit),      std::string(kClaims),
          std::string(kUsagePacks)};
}

}  // namespace joule::storage
