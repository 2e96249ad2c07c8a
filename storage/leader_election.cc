#include "storage/leader_election.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace joule::storage {

LeaderElection::LeaderElection(EtcdClient* client, Options options)
    : client_(client), options_(std::move(options)) {}

LeaderElection::~LeaderElection() {
  Cancel();
  StopKeepAlive();
}

std::string LeaderElection::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

bool LeaderElection::leading() const {
  absl::MutexLock lock(&mu_);
  return leading_;
}

void LeaderElection::Cancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  watch_cancel_.Cancel();
}

absl::StatusOr<int64_t> LeaderElection::Campaign() {
  const int64_t ttl_s = std::max<int64_t>(
      1, absl::ToInt64Seconds(options_.ttl + absl::Milliseconds(999)));
  int64_t lease = 0;
  absl::Time lease_granted;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&cancelled_),
                               absl::ZeroDuration())) {
        break;
      }
    }
    // Is there a leader?
    etcdserverpb::RangeRequest get;
    get.set_key(options_.key);
    auto cur = client_->Range(get);
    if (cur.ok() && cur->kvs_size() == 0) {
      {
        absl::MutexLock lock(&mu_);
        leader_.clear();
      }
      // A fresh lease unless ours is still young (a lost race).
      if (lease == 0 || absl::Now() - lease_granted > options_.ttl / 3) {
        if (lease != 0) client_->LeaseRevoke(lease).IgnoreError();
        lease_granted = absl::Now();
        auto g = client_->LeaseGrant(ttl_s);
        lease = g.ok() ? g->id() : 0;
      }
      if (lease != 0) {
        etcdserverpb::TxnRequest txn;
        etcdserverpb::Compare* c = txn.add_compare();
        c->set_result(etcdserverpb::Compare::EQUAL);
        c->set_target(etcdserverpb::Compare::CREATE);
        c->set_key(options_.key);
        c->set_create_revision(0);
        etcdserverpb::PutRequest* put =
            txn.add_success()->mutable_request_put();
        put->set_key(options_.key);
        put->set_value(options_.value);
        put->set_lease(lease);
        txn.add_failure()->mutable_request_range()->set_key(options_.key);
        auto r = client_->Txn(txn);
        if (r.ok() && r->succeeded()) {
          const int64_t rev = r->header().revision();
          StopKeepAlive();
          absl::MutexLock lock(&mu_);
          leading_ = true;
          stop_keepalive_ = false;
          lease_ = lease;
          leader_ = options_.value;
          keepalive_ = std::thread([this, lease, lease_granted] {
            KeepAliveLoop(lease, lease_granted);
          });
          return rev;
        }
        if (r.ok() && r->responses_size() > 0 &&
            r->responses(0).response_range().kvs_size() > 0) {
          absl::MutexLock lock(&mu_);
          leader_ = r->responses(0).response_range().kvs(0).value();
        }
        // An unknown outcome may have made us leader with this lease; the
        // key then reads back with our value and lease on the next round.
        if (!r.ok() && IsOutcomeUnknown(r.status())) {
          auto again = client_->Range(get);
          if (again.ok() && again->kvs_size() > 0 &&
              again->kvs(0).lease() == lease) {
            const int64_t rev = again->kvs(0).create_revision();
            StopKeepAlive();
            absl::MutexLock lock(&mu_);
            leading_ = true;
            stop_keepalive_ = false;
            lease_ = lease;
            leader_ = options_.value;
            keepalive_ = std::thread([this, lease, lease_granted] {
              KeepAliveLoop(lease, lease_granted);
            });
            return rev;
          }
        }
      }
    } else if (cur.ok()) {
      {
        absl::MutexLock lock(&mu_);
        leader_ = cur->kvs(0).value();
      }
      // Wait for the key's deletion after the revision we read it at.
      if (options_.watch) {
        auto gone =
            client_->WaitForDelete(options_.key, cur->header().revision() + 1,
                                   options_.watch_recheck, &watch_cancel_);
        if (gone.ok()) continue;  // deleted, or time to read it again
        if (gone.status().code() == absl::StatusCode::kCancelled) continue;
        // No watch on this member: poll (below).
      }
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_), options_.poll);
  }
  if (lease != 0) client_->LeaseRevoke(lease).IgnoreError();
  return absl::CancelledError("election cancelled");
}

void LeaderElection::KeepAliveLoop(int64_t lease, absl::Time last_sent_ok) {
  const absl::Duration interval = options_.ttl / 3;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_keepalive_), interval)) {
        return;
      }
    }
    const absl::Time sent = absl::Now();
    // Asleep (SIGSTOP, a long pause) past the TTL: etcd may have expired
    // the lease already and another jouled may lead.
    absl::Status lost;
    if (sent - last_sent_ok >= options_.ttl) {
      lost = absl::UnavailableError(absl::StrCat(
          "no lease keep-alive for ", absl::FormatDuration(sent - last_sent_ok),
          " (ttl ", absl::FormatDuration(options_.ttl), ")"));
    } else {
      auto ttl = client_->LeaseKeepAlive(lease);
      if (ttl.ok() && *ttl > 0) {
        last_sent_ok = sent;
        continue;
      }
      if (ttl.ok()) {
        lost = absl::FailedPreconditionError("the leader lease expired");
      } else if (absl::Now() - last_sent_ok >= options_.ttl) {
        lost = absl::UnavailableError(
            absl::StrCat("lease keep-alive failing for longer than the ttl: ",
                         ttl.status().message()));
      } else {
        continue;  // retry within the TTL
      }
    }
    std::function<void(const absl::Status&)> fn;
    {
      absl::MutexLock lock(&mu_);
      if (stop_keepalive_) return;
      leading_ = false;
      leader_.clear();
      fn = options_.on_lost;
    }
    fprintf(stderr, "jouled: leadership lost: %s\n",
            std::string(lost.message()).c_str());
    if (fn) fn(lost);
    return;
  }
}

void LeaderElection::StopKeepAlive() {
  {
    absl::MutexLock lock(&mu_);
    stop_keepalive_ = true;
  }
  if (keepalive_.joinable() &&
      keepalive_.get_id() != std::this_thread::get_id()) {
    keepalive_.join();
  } else if (keepalive_.joinable()) {
    keepalive_.detach();
  }
}

void LeaderElection::Resign() {
  StopKeepAlive();
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
    lease_ = 0;
    leading_ = false;
    leader_.clear();
  }
  if (lease != 0) client_->LeaseRevoke(lease).IgnoreError();
}

}  // namespace joule::storage
