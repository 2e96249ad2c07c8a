#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "billing/money.h"
#include "billing/period.h"
#include "billing/rating.h"
#include "billing/usage_pack.h"
#include "common/clock.h"
#include "joule/v1/billing_records.pb.h"
#include "joule/v1/joule.pb.h"
#include "storage/store.h"

namespace joule::billing {

// Which tenants exist. Implemented by the daemon over its tenant table.
// Implementations must be thread-safe.
class TenantDirectory {
 public:
  virtual ~TenantDirectory() = default;
  virtual bool Exists(std::string_view tenant) const = 0;
};

// One job attempt's GPU usage, reported by the daemon when the attempt ends.
struct JobUsage {
  std::string tenant;
  std::string job_id;
  uint32_t attempt = 0;
  std::string gpu_model;
  v1::ServiceClass service_class = v1::SERVICE_CLASS_UNSPECIFIED;  // ran as
  uint32_t gpus = 0;
  absl::Time start;  // agent-reported start
  absl::Time end;    // agent-reported end
  uint64_t energy_mj = 0;
};

// The class an attempt is billed as: a reserved job stays reserved even when
// the scheduler runs it at on-demand priority beyond the tenant's contract
// (the ledger's sweep then bills the GPUs beyond the commitment as reserved
// overage); other jobs are billed as the class they ran as. Shared by the
// daemon and the simulator.
inline v1::ServiceClass BilledClass(v1::ServiceClass requested,
                                    v1::ServiceClass ran_as) {
  return requested == v1::SERVICE_CLASS_RESERVED ? v1::SERVICE_CLASS_RESERVED
                                                 : ran_as;
}

// The billing ledger: rates GPU and inference usage into monthly statements.
//
// Owns, in memory and backed by `store` (tables prices, contracts, usage,
// usage_agg, job_usage, statements, meta): the versioned price catalogue, the
// reserved contracts, the idempotency keys of inference usage (as 64-bit
// hashes; the store holds the keys), the inference usage aggregates per
// (tenant, booking period, origin period, model, price version), the job
// attempts' GPU usage split per month, and the set of finalized periods;
// also the tenants' rate cards (prices with a tenant), the credit notes, the
// prepaid-credit grants and the future-dated events a later price change may
// re-rate. Code: ledger.cc (catalogue, contracts, usage, load),
// ledger_statements.cc (statements, finalize, backlog), ledger_credits.cc
// (credit notes, credits, export, CheckPriced).
// Does not own store, clock or tenants (they must outlive it).
//
// Invariants: every change is persisted with one synchronous WriteBatch
// before memory changes and before a call returns OK; a finalized period's
// statements are stored and never change, usage arriving for it later is
// booked into the first open period after it as adjustment lines; money is
// int64 micro-dollars / exact __int128 rationals until the one rounding per
// statement line (RoundHalfEven to cents).
//
// Thread-safety: thread-safe. One mutex serialises writers (so the
// idempotency check and the write of RecordUsage are atomic against a
// concurrent identical batch); readers share it.
class Ledger {
 public:
  Ledger(storage::Store* store, const Clock* clock,
         const TenantDirectory* tenants);
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Rebuilds the in-memory state from the store (after a restart). Replaces
  // whatever the ledger held.
  absl::Status Load();

  // Validates, assigns the next version, persists (sync). effective_from
  // unset = now; in the past only for the first price of its item.
  absl::StatusOr<v1::Price> SetPrice(const v1::Price& price);
  // include_history = false: per item the price in effect now plus the
  // scheduled (future) ones; true: every version. Ordered by version.
  std::vector<v1::Price> ListPrices(bool include_history) const;

  // Validates (dates YYYY-MM-DD, end > start, gpus > 0, rate decimal, tenant
  // exists, no finalized period inside the term), assigns id "C-000001",...,
  // computes value_micros, persists (sync).
  absl::StatusOr<v1::Contract> CreateContract(const v1::Contract& c);
  // Ordered by id. Empty tenant = all tenants.
  std::vector<v1::Contract> ListContracts(std::string_view tenant) const;
  // Active contracted GPUs per tenant, then per GPU model, at time t (for the
  // scheduler): sum of `gpus` of contracts with start <= t < end.
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
  ContractedGpus(absl::Time t) const;

  // Records a batch of inference usage exactly once; see docs/billing.md.
  // Every event is validated before anything is written. The new events'
  // idempotency records are written packed (billing/usage_pack.h) with the
  // aggregates they move, in parts that fit the store's max_batch_ops and
  // max_batch_bytes (docs/ha.md#sizing): each part is one atomic write of
  // its events' records and the aggregates as they stand after them, so
  // every prefix of parts is consistent; a later part's error names its
  // event's index in the whole batch and says which events were recorded.
  // Idempotency keys are scoped per (tenant, source): `source` is the id of
  // the principal that sends the batch (e.g. "operator", a metering feed).
  absl::StatusOr<v1::RecordUsageResponse> RecordUsage(
      absl::Span<const v1::UsageEvent> events, std::string_view source);

  // The GPU models the cluster knows (config catalogue). When set, prices
  // and contracts naming another model are INVALID_ARGUMENT listing them.
  void SetGpuCatalogue(std::vector<std::string> models);
  // OK when usage of (gpu_model, class) by `tenant` at `t` has a price:
  // on-demand / spot: a list or tenant price in effect; reserved: an
  // active contract of the tenant for the model with an overage rate, or
  // an on-demand price. Empty gpu_model: every catalogue model must be
  // priced. FAILED_PRECONDITION naming the item otherwise.
  absl::Status CheckPriced(std::string_view tenant, std::string_view gpu_model,
                           v1::ServiceClass cls, absl::Time t) const;
  // Attempts still running, accrued on open statements as "in progress, to
  // now" (end = now). Set once by the daemon before serving. Called by
  // GetStatement / JobBilling before they take the ledger's lock (so it may
  // lock the caller's own state, which calls into the ledger).
  using RunningFn = std::function<std::vector<JobUsage>()>;
  void SetRunningAttempts(RunningFn fn);
  // How each attempt of a job was billed (every period it touched).
  // `caller_tenant` non-empty: NOT_FOUND unless the job is that tenant's.
  absl::StatusOr<v1::GetJobBillingResponse> JobBilling(
      std::string_view job_id, std::string_view caller_tenant) const;

  // How long usage idempotency records are kept (docs/ha.md#sizing).
  // Infinite (the default): forever, and events of any age are taken. Finite:
  // RecordUsage refuses events older than now - window (their record may be
  // gone, so a re-sent one would count twice), and CompactUsageRecords()
  // deletes the records of events older than that. Statements read only the
  // aggregates, so deleting records changes no amount.
  void set_usage_dedup_window(absl::Duration window);
  // Deletes the usage records older than the window, in writes of at most
  // the store's max_batch_ops (1,000 if unlimited); returns how many. A
  // pack goes once its newest event is older than the window (so a record
  // is kept at least the window after its event, and at most the window
  // after its pack was written plus the 5 minutes of allowed clock skew).
  absl::StatusOr<int64_t> CompactUsageRecords();
  // True once the attempt's usage is rated (its job_usage record is in the
  // ledger) and settled (every period it is booked in is finalized, so no
  // open statement accrues it any more): the job's record may then be
  // deleted (daemon/job_retention.h). False for an unknown attempt.
  bool AttemptSettled(std::string_view job_id, uint32_t attempt) const;

  // Job usage, idempotent by (job_id, attempt). AddJobUsage appends the
  // records to the caller's batch (to commit atomically with the job's state
  // change; an invalid or already recorded usage appends nothing);
  // ApplyJobUsage updates memory after that batch committed. RecordJobUsage
  // does both with its own synchronous write.
  void AddJobUsage(const JobUsage& u, storage::WriteBatch* batch) const;
  void ApplyJobUsage(const JobUsage& u);
  absl::Status RecordJobUsage(const JobUsage& u);
  // INVALID_ARGUMENT naming the field when `u` cannot be recorded.
  static absl::Status ValidateJobUsage(const JobUsage& u);

  // The statement of a tenant for a period "YYYY-MM": the stored one once
  // the period is finalized, else computed from the aggregates.
  absl::StatusOr<v1::Statement> GetStatement(std::string_view tenant,
                                             std::string_view period) const;
  // Freezes every tenant's statement of an ended period (FAILED_PRECONDITION
  // before its end) with statement numbers "JS-YYYY-MM-000001", ... in
  // tenant order. Finalizing a finalized period again returns the stored
  // statements.
  absl::StatusOr<v1::FinalizePeriodResponse> FinalizePeriod(
      std::string_view period);
  // Reserved-contract backlog (remaining performance obligation) as of a
  // time: one row per contract (by id), totals per GPU model, and a total
  // in dollars.
  absl::StatusOr<v1::GetBacklogResponse> Backlog(absl::Time as_of) const;

  // Credit notes, prepaid credits and the finance export
  // (ledger_credits.cc; docs/billing.md).
  // A numbered credit note against a finalized statement, booked as a
  // negative line into the first open period after it; the notes of one
  // statement together at most its total.
  absl::StatusOr<v1::CreditNote> IssueCreditNote(
      const v1::IssueCreditNoteRequest& req);
  // Appends a prepaid-credit grant; statements not yet finalized draw it
  // down (earliest expiry first) before the amount due.
  absl::StatusOr<v1::CreditGrant> GrantCredits(
      const v1::GrantCreditsRequest& req);
  absl::StatusOr<v1::ListCreditsResponse> ListCredits(
      std::string_view tenant) const;
  // Every statement line of every tenant of a period, with the statement
  // numbers (once finalized), and the revenue recognised per contract.
  absl::StatusOr<v1::ExportPeriodResponse> ExportPeriod(
      std::string_view period) const;

 private:
  absl::Duration usage_dedup_window_ ABSL_GUARDED_BY(mu_) =
      absl::InfiniteDuration();

  // Usage ingestion (ledger_usage.cc). The usage idempotency records: the
  // index of packs and single records (tables usage_packs, usage), loaded
  // by Load; requires mu_ held exclusively.
  absl::Status LoadUsageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the packs in `slots` (their newest event is older than the
  // window) and drops their keys from the index; returns the records.
  absl::StatusOr<int64_t> DeletePacks(const std::vector<uint32_t>& slots);

  // A GPU-hour price version for one (GPU model, class), list or card.
  struct GpuRate {
    int64_t from = 0;  // effective_from, Unix seconds
    uint64_t version = 0;
    int64_t rate_micros = 0;
  };
  // The rate in effect at a time and whose card it is.
  struct RateAt {
    int64_t rate_micros = 0;
    bool tenant_card = false;
  };
  // Highest rates any version of an inference price ever had (bounds).
  struct MaxRates {
    int64_t input = 0;   // per 1M tokens
    int64_t output = 0;  // per 1M tokens
    int64_t request = 0;
  };
  // An inference price version.
  struct InferenceRate {
    std::string tenant;  // empty: list price
    absl::Time from;
    uint64_t version = 0;
    std::vector<Tier> input;
    std::vector<Tier> output;
    std::optional<int64_t> per_request_micros;
  };
  struct ContractState {
    v1::Contract proto;
    ContractTerms terms;
    std::optional<int64_t> overage_micros;
  };
  struct Piece {
    Period origin;
    Period booking;
    Interval interval;
    uint64_t energy_mj = 0;
  };
  struct Attempt {
    std::string job_id;
    uint32_t attempt = 0;
    bool in_progress = false;
    std::string tenant;
    std::string gpu_model;
    v1::ServiceClass service_class = v1::SERVICE_CLASS_UNSPECIFIED;
    uint32_t gpus = 0;
    std::vector<Piece> pieces;
  };
  // Helpers; all require mu_ held (shared at least).
  Period BookingPeriodLocked(Period origin) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The tenant's rate card version in effect at t, else the list one.
  const InferenceRate* InferenceRateAtLocked(std::string_view tenant,
                                             const std::string& model,
                                             absl::Time t) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::optional<RateAt> GpuRateAtLocked(std::string_view tenant,
                                        std::string_view model,
                                        v1::ServiceClass cls, int64_t t) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::vector<int64_t> GpuRateChangesLocked(std::string_view tenant,
                                            std::string_view model,
                                            v1::ServiceClass cls) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::optional<RateAt> OverageRateAtLocked(std::string_view tenant,
                                            std::string_view model,
                                            int64_t t) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // `running`: in-progress attempts (end = now) to accrue, open periods only.
  absl::StatusOr<v1::Statement> ComputeStatementLocked(
      const std::string& tenant, Period period,
      const std::vector<Attempt>& running = {}) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Credit notes and prepaid credits of a statement (ledger_credits.cc):
  // adds the credit-note lines booked into `period` and draws prepaid
  // credits against the total.
  absl::Status ApplyCreditsLocked(const std::string& tenant, Period period,
                                  v1::Statement* st) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status CheckGpuModelLocked(std::string_view model,
                                   std::string_view field) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The running attempts (end = now) as in-progress attempts.
  std::vector<Attempt> ToAttemptsLocked(const std::vector<JobUsage>& running)
      const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  static Attempt AttemptFromRecord(const v1::billing::JobUsageRecord& r);
  // INVALID_ARGUMENT when usage of `model` valued at `max` could exceed
  // kMaxLineMicros for some (tenant, month).
  absl::Status CheckLineBoundsLocked(std::string_view card_tenant,
                                     std::string_view model,
                                     const MaxRates& max) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::set<std::string> TenantsWithActivityLocked(Period period) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  v1::billing::JobUsageRecord BuildJobRecordLocked(const JobUsage& u) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Memory updates; require mu_ held exclusively.
  absl::Status ApplyPriceLocked(const v1::Price& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyContractLocked(const v1::Contract& c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyJobRecordLocked(const v1::billing::JobUsageRecord& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyAggregateLocked(const std::string& key,
                            v1::billing::InferenceAggregate agg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-rates stored future-dated events of `model` dated at or after
  // `from` with the new version (item 7); adds the rewrites to `batch` and
  // returns the aggregates to apply after it committed.
  absl::StatusOr<
      std::vector<std::pair<std::string, v1::billing::InferenceAggregate>>>
  RerateFutureEventsLocked(const v1::Price& p, storage::WriteBatch* batch)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ApplyCreditRecordLocked(std::string_view key,
                                       std::string_view value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Store* const store_;
  const Clock* const clock_;
  const TenantDirectory* const tenants_;

  mutable absl::Mutex mu_;
  // Catalogue: every version by number; per item the versions in
  // (effective_from, version) order.
  std::map<uint64_t, v1::Price> prices_ ABSL_GUARDED_BY(mu_);
  uint64_t last_price_version_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::vector<GpuRate>> gpu_rates_
      ABSL_GUARDED_BY(mu_);  // key: card tenant \0 model \0 class
  absl::flat_hash_map<std::string, std::vector<InferenceRate>> inference_rates_
      ABSL_GUARDED_BY(mu_);  // key: card tenant \0 served model
  absl::flat_hash_map<uint64_t, std::pair<std::string, size_t>>
      inference_by_version_ ABSL_GUARDED_BY(mu_);  // -> rates key, index
  absl::flat_hash_set<std::string> inference_models_ ABSL_GUARDED_BY(mu_);
  // Per served model: highest rates of any version, list or card.
  absl::flat_hash_map<std::string, MaxRates> max_rates_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> gpu_catalogue_ ABSL_GUARDED_BY(mu_);
  RunningFn running_fn_;  // set before serving, then read-only
  // Future-dated events (time > now when accepted), by usage key, until
  // their time has passed: the ones a later price change may re-rate.
  std::map<std::string, int64_t> future_events_ ABSL_GUARDED_BY(mu_);
  // Credit notes and grants (ledger_credits.cc), by number / id.
  std::map<std::string, v1::CreditNote> credit_notes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::CreditGrant> grants_ ABSL_GUARDED_BY(mu_);
  // Finalized statements by number: tenant, period, total, credits drawn.
  struct StatementRef {
    std::string tenant;
    Period period = Period::OfUnixSeconds(0);
    int64_t total_cents = 0;
    int64_t credits_applied_cents = 0;
  };
  std::map<std::string, StatementRef> statement_numbers_ ABSL_GUARDED_BY(mu_);
  // Contracts by id.
  std::map<std::string, ContractState> contracts_ ABSL_GUARDED_BY(mu_);
  uint64_t last_contract_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<Period> finalized_ ABSL_GUARDED_BY(mu_);
  // Where the stored usage keys (tenant, source, idempotency key) are, by
  // hash: a pack or a single record. A hit is confirmed against the store
  // (hashes may collide). Only the leader writes (fenced), so its index is
  // complete once loaded.
  UsageIndex usage_index_ ABSL_GUARDED_BY(mu_);
  // Serialises CompactUsageRecords (it works outside mu_).
  absl::Mutex compact_mu_;
  // Inference aggregates by usage_agg key, and their keys per
  // (tenant \0 booking period).
  absl::flat_hash_map<std::string, v1::billing::InferenceAggregate> aggs_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::string>> aggs_by_statement_
      ABSL_GUARDED_BY(mu_);
  // Monthly token count per (tenant \0 model \0 origin period \0 direction),
  // the position on the graduated tiers.
  absl::flat_hash_map<std::string, uint64_t> monthly_tokens_
      ABSL_GUARDED_BY(mu_);
  // Job attempts by job_usage key, and their keys per tenant.
  absl::flat_hash_map<std::string, Attempt> attempts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::string>> attempts_by_tenant_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::billing
