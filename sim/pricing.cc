#include "sim/pricing.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::sim {
namespace {

absl::Status Bad(absl::string_view file, int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ":", line, ": ", what));
}

// "0:0.60,1000000000:0.50" -> tiers.
absl::Status ParseTiers(absl::string_view spec,
                        google::protobuf::RepeatedPtrField<v1::PriceTier>* out,
                        absl::string_view file, int line,
                        absl::string_view field) {
  for (absl::string_view t : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p =
        absl::StrSplit(t, absl::MaxSplits(':', 1));
    uint64_t from = 0;
    if (!absl::SimpleAtoi(p.first, &from) || p.second.empty()) {
      return Bad(file, line,
                 absl::StrCat(field, ": tier \"", t,
                              "\" is not FROM_TOKENS:USD_PER_1M"));
    }
    v1::PriceTier* tier = out->Add();
    tier->set_from_tokens(from);
    tier->set_price(std::string(p.second));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PricingFile> ParsePricingFile(absl::string_view text,
                                             absl::string_view filename) {
  PricingFile out;
  int n = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++n;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> w =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const absl::string_view kind = w[0];
    if (kind == "gpu-hour") {
      if (w.size() != 4) {
        return Bad(filename, n, "want: gpu-hour MODEL on-demand|spot USD");
      }
      v1::Price p;
      p.mutable_gpu_hour()->set_gpu_model(std::string(w[1]));
      if (w[2] == "on-demand") {
        p.mutable_gpu_hour()->set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
      } else if (w[2] == "spot") {
        p.mutable_gpu_hour()->set_service_class(v1::SERVICE_CLASS_SPOT);
      } else {
        return Bad(filename, n,
                   absl::StrCat("class \"", w[2],
                                "\" is not on-demand or spot (reserved rates "
                                "come from contracts)"));
      }
      p.mutable_gpu_hour()->set_price(std::string(w[3]));
      out.prices.push_back(std::move(p));
    } else if (kind == "inference") {
      if (w.size() < 3) {
        return Bad(filename, n,
                   "want: inference MODEL [input=TIERS] [output=TIERS] "
                   "[per-request=USD]");
      }
      v1::Price p;
      v1::InferencePrice* ip = p.mutable_inference();
      ip->set_model(std::string(w[1]));
      for (size_t i = 2; i < w.size(); ++i) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(w[i], absl::MaxSplits('=', 1));
        if (kv.first == "input") {
          RETURN_IF_ERROR(
              ParseTiers(kv.second, ip->mutable_input(), filename, n, "input"));
        } else if (kv.first == "output") {
          RETURN_IF_ERROR(ParseTiers(kv.second, ip->mutable_output(), filename,
                                     n, "output"));
        } else if (kv.first == "per-request") {
          ip->set_per_request(std::string(kv.second));
        } else {
          return Bad(filename, n,
                     absl::StrCat("unknown inference field \"", kv.first,
                                  "\" (input, output, per-request)"));
        }
      }
      out.prices.push_back(std::move(p));
    } else if (kind == "contract") {
      if (w.size() != 7 && w.size() != 8) {
        return Bad(filename, n,
                   "want: contract TENANT MODEL GPUS START END RATE "
                   "[overage=RATE]");
      }
      v1::Contract c;
      c.set_tenant(std::string(w[1]));
      c.set_gpu_model(std::string(w[2]));
      uint32_t gpus = 0;
      if (!absl::SimpleAtoi(w[3], &gpus) || gpus == 0) {
        return Bad(
            filename, n,
            absl::StrCat("gpus: \"", w[3], "\" is not a positive integer"));
      }
      c.set_gpus(gpus);
      c.set_start_date(std::string(w[4]));
      c.set_end_date(std::string(w[5]));
      c.set_rate(std::string(w[6]));
      if (w.size() == 8) {
        if (!absl::StartsWith(w[7], "overage=")) {
          return Bad(filename, n,
                     absl::StrCat("\"", w[7], "\": want overage=USD"));
        }
        c.set_overage_rate(std::string(w[7].substr(8)));
      }
      out.contracts.push_back(std::move(c));
    } else if (kind == "tenant") {
      uint32_t weight = 0;
      if (w.size() != 3 || !absl::StartsWith(w[2], "weight=") ||
          !absl::SimpleAtoi(w[2].substr(7), &weight) || weight == 0) {
        return Bad(filename, n, "want: tenant NAME weight=N (N >= 1)");
      }
      out.tenant_weights[std::string(w[1])] = weight;
    } else {
      return Bad(filename, n,
                 absl::StrCat("unknown entry \"", kind,
                              "\" (gpu-hour, inference, contract, tenant)"));
    }
  }
  return out;
}

absl::Status ApplyPricing(const PricingFile& pricing, absl::Time start,
                          billing::Ledger* ledger) {
  for (const v1::Price& p : pricing.prices) {
    v1::Price q = p;
    *q.mutable_effective_from() = ToProtoTime(start);
    auto r = ledger->SetPrice(q);
    if (!r.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pricing: ", r.status().message()));
    }
  }
  for (const v1::Contract& c : pricing.contracts) {
    auto r = ledger->CreateContract(c);
    if (!r.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pricing: contract of ", c.tenant(), ": ", r.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace joule::sim
