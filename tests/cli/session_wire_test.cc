// The session's frames (cli/session_wire.h): round trips, every limit and
// malformed body refused with a line naming the field, and the method
// names joulectl derives from (service, request type, response type):
// UnaryMethodName, and the table generated with it (unary_methods.h).
#include "cli/session_wire.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/unary_methods.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "joule/v1/auth.grpc.pb.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::cli {
namespace {

std::string U16(uint16_t v) { return std::string{char(v >> 8), char(v)}; }
std::string U32(uint32_t v) {
  return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}
std::string U64(uint64_t v) { return U32(v >> 32) + U32(v); }
std::string Body(const std::string& frame) {
  return frame.substr(kFrameHeaderBytes);
}

TEST(SessionWire, RequestsAndResponsesRoundTrip) {
  const std::vector<WireRequest> cases = {
      {"/joule.v1.JobService/SubmitJob", 30000000, {}, "payload"},
      {"/a.B/C", 0, {{"x-joule-as-tenant", "acme"}, {"k", ""}}, ""},
      {"/a.B/C", INT64_MAX, {}, std::string(100000, '\0')},
  };
  for (const WireRequest& r : cases) {
    auto f = EncodeRequest(r);
    ASSERT_TRUE(f.ok()) << f.status();
    auto len = FrameBodyLength(f->substr(0, kFrameHeaderBytes), kMaxFrameBody);
    ASSERT_TRUE(len.ok()) << len.status();
    EXPECT_EQ(*len, f->size() - kFrameHeaderBytes);
    auto d = DecodeRequest(Body(*f));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->method, r.method);
    EXPECT_EQ(d->timeout_us, r.timeout_us);
    EXPECT_EQ(d->metadata, r.metadata);
    EXPECT_EQ(d->payload, r.payload);
  }
  for (const WireResponse& r : std::vector<WireResponse>{
           {0, "", "bytes"}, {3, "--gpus: too many", ""}, {16, "x", ""}}) {
    auto f = EncodeResponse(r);
    ASSERT_TRUE(f.ok()) << f.status();
    auto d = DecodeResponse(Body(*f));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->code, r.code);
    EXPECT_EQ(d->message, r.message);
    EXPECT_EQ(d->payload, r.payload);
  }
}

TEST(SessionWire, EncodeRefusesFieldsBeyondTheirLimits) {
  struct Case {
    WireRequest r;
    const char* names;
  };
  const std::vector<Case> cases = {
      {{std::string(kMaxFrameMethod + 1, 'm'), 0, {}, ""}, "method of 257"},
      {{"/a.B/C", -1, {}, ""}, "timeout_us must be >= 0"},
      {{"/a.B/C", 0, std::vector<std::pair<std::string, std::string>>(17), ""},
       "metadata (pairs) of 17"},
      {{"/a.B/C", 0, {{std::string(kMaxFrameKey + 1, 'k'), ""}}, ""},
       "key of 257"},
      {{"/a.B/C", 0, {{"k", std::string(kMaxFrameValue + 1, 'v')}}, ""},
       "value of 4097"},
      {{"/a.B/C", 0, {}, std::string(kMaxFramePayload + 1, 'p')},
       "payload of 67108865"},
  };
  for (const Case& c : cases) {
    auto f = EncodeRequest(c.r);
    ASSERT_FALSE(f.ok()) << c.names;
    EXPECT_TRUE(absl::StrContains(f.status().message(), c.names)) << f.status();
  }
  EXPECT_FALSE(EncodeResponse({17, "", ""}).ok());
  auto cut = EncodeResponse({2, std::string(kMaxFrameMessage + 5, 'x'), ""});
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(DecodeResponse(Body(*cut))->message.size(), kMaxFrameMessage);
}

TEST(SessionWire, HeadersOfAnotherProtocolOrTooLongAreRefused) {
  struct Case {
    std::string header;
    absl::StatusCode code;
    const char* names;
  };
  const std::vector<Case> cases = {
      {"PRI * HT", absl::StatusCode::kInvalidArgument, "not a joulectl"},
      {"JSF2" + U32(0), absl::StatusCode::kInvalidArgument, "not a joulectl"},
      {"JSF1", absl::StatusCode::kInvalidArgument, "not a joulectl"},
      {"JSF1" + U32(kMaxFrameBody + 1), absl::StatusCode::kResourceExhausted,
       "the most is"},
      {"JSF1" + U32(0xffffffff), absl::StatusCode::kResourceExhausted,
       "4294967295 bytes"},
  };
  for (const Case& c : cases) {
    auto n = FrameBodyLength(c.header, kMaxFrameBody);
    ASSERT_FALSE(n.ok()) << c.header;
    EXPECT_EQ(n.status().code(), c.code) << n.status();
    EXPECT_TRUE(absl::StrContains(n.status().message(), c.names)) << n.status();
  }
  EXPECT_EQ(*FrameBodyLength("JSF1" + U32(7), kMaxFrameBody), 7u);
}

TEST(SessionWire, MalformedBodiesAreRefusedNamingTheField) {
  const std::string method = U16(6) + "/a.B/C";
  const std::string ok_tail = U64(1) + U16(0) + U32(0);
  struct Case {
    std::string body;
    const char* names;
  };
  const std::vector<Case> cases = {
      {"", "ends inside method"},
      {U16(10) + "/a", "ends inside method"},
      {U16(300) + std::string(300, 'm'), "method of 300 bytes"},
      {method, "ends inside timeout_us"},
      {method + U64(1), "ends inside metadata count"},
      {method + U64(1) + U16(17), "metadata (pairs) of 17"},
      {method + U64(1) + U16(1) + U16(1) + "k", "ends inside value"},
      {method + U64(1) + U16(1) + U16(1) + "k" + U32(5000),
       "value of 5000 bytes"},
      {method + U64(1) + U16(0), "ends inside payload"},
      {method + U64(1) + U16(0) + U32(kMaxFramePayload + 1),
       "payload of 67108865 bytes"},
      {method + ok_tail + "x", "1 bytes after the last field"},
      {method + U64(uint64_t{1} << 63) + U16(0) + U32(0), "timeout_us"},
      {U16(4) + "a.BC" + ok_tail, "not /package.Service/Method"},
      {U16(4) + "/aBC" + ok_tail, "not /package.Service/Method"},
  };
  for (const Case& c : cases) {
    auto r = DecodeRequest(c.body);
    ASSERT_FALSE(r.ok()) << c.names;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(r.status().message(), c.names))
        << c.names << ": " << r.status();
  }
  EXPECT_TRUE(DecodeRequest(method + ok_tail).ok());
  for (const std::string& body :
       {std::string(), U32(0), U32(17) + U32(0) + U32(0),
        U32(0) + U32(kMaxFrameMessage + 1), U32(0) + U32(0) + U32(3) + "ab",
        U32(0) + U32(0) + U32(0) + "x"}) {
    EXPECT_FALSE(DecodeResponse(body).ok()) << body.size();
  }
}

// Every method of joule's services is the only one of its service with
// its request and response types, so those types name it: a second
// method with the same pair fails here first.
TEST(SessionWire, EveryMethodIsNamedByItsServiceAndTypes) {
  std::vector<const google::protobuf::ServiceDescriptor*> services;
  for (const google::protobuf::FileDescriptor* f :
       {v1::Job::descriptor()->file(),
        v1::WhoAmIRequest::descriptor()->file()}) {
    for (int i = 0; i < f->service_count(); ++i) {
      services.push_back(f->service(i));
    }
  }
  ASSERT_EQ(services.size(), 5u);  // Auth, Agent, Job, Admin, Billing
  int unary = 0;
  for (const auto* s : services) {
    std::set<std::pair<const void*, const void*>> seen;
    for (int i = 0; i < s->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = s->method(i);
      EXPECT_TRUE(seen.insert({m->input_type(), m->output_type()}).second)
          << s->full_name() << "." << m->name() << " shares its types";
      auto name =
          UnaryMethodName(s->full_name(), m->input_type(), m->output_type());
      if (m->client_streaming() || m->server_streaming()) {
        EXPECT_EQ(name.status().code(), absl::StatusCode::kNotFound);
        continue;
      }
      ++unary;
      ASSERT_TRUE(name.ok()) << name.status();
      EXPECT_EQ(*name, absl::StrCat("/", s->full_name(), "/", m->name()));
    }
  }
  EXPECT_GT(unary, 30);
  EXPECT_EQ(*UnaryMethodName(v1::JobService::service_full_name(),
                             v1::SubmitJobRequest::descriptor(),
                             v1::SubmitJobResponse::descriptor()),
            "/joule.v1.JobService/SubmitJob");
  // The generated table joulectl uses names them the same.
  EXPECT_STREQ((UnaryMethod<v1::JobService::Stub, v1::SubmitJobRequest,
                            v1::SubmitJobResponse>::kName),
               "/joule.v1.JobService/SubmitJob");
  EXPECT_STREQ((UnaryMethod<v1::AdminService::Stub, v1::SetPowerCapRequest,
                            v1::PowerCapPreview>::kName),
               "/joule.v1.AdminService/PreviewPowerCap");
  EXPECT_STREQ((UnaryMethod<v1::AuthService::Stub, v1::RevokeTokenRequest,
                            v1::Token>::kName),
               "/joule.v1.AuthService/RevokeToken");
  // A pair no method has, and a service that does not exist.
  EXPECT_EQ(UnaryMethodName("joule.v1.JobService",
                            v1::SubmitJobResponse::descriptor(),
                            v1::SubmitJobRequest::descriptor())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(UnaryMethodName("joule.v1.Nope", v1::Job::descriptor(),
                            v1::Job::descriptor())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

// ReadFrame over a socket pair: a whole frame, a clean close, a close
// mid-frame, a deadline, and a header it refuses before reading a body.
TEST(SessionWire, ReadFrameOverASocket) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  auto frame = EncodeResponse({0, "", "abc"});
  ASSERT_TRUE(WriteAll(sv[1], *frame).ok());
  auto body = ReadFrame(sv[0], kMaxFrameBody, absl::InfiniteFuture());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(DecodeResponse(*body)->payload, "abc");
  auto late = ReadFrame(sv[0], kMaxFrameBody, absl::Now());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(WriteAll(sv[1], "JSF1" + U32(1 << 30)).ok());
  auto big = ReadFrame(sv[0], kMaxFrameBody, absl::InfiniteFuture());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(WriteAll(sv[1], "JSF1" + U32(10) + "abc").ok());
  close(sv[1]);
  auto cut = ReadFrame(sv[0], kMaxFrameBody, absl::InfiniteFuture());
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kUnavailable)
      << cut.status();
  auto end = ReadFrame(sv[0], kMaxFrameBody, absl::InfiniteFuture());
  EXPECT_EQ(end.status().code(), absl::StatusCode::kOutOfRange);
  close(sv[0]);
}

// FrameClient against a peer that answers garbage or hangs up: an
// UNAVAILABLE or INTERNAL answer naming why, never a crash, and the
// connection is not used again.
TEST(SessionWire, FrameClientReportsABrokenPeer) {
  EXPECT_EQ(FrameClient::Connect("/nonexistent/x.frames"), nullptr);
  char dir[] = "/tmp/session_wire_testXXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/s.frames";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int l = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(l, 4), 0);
  struct Case {
    std::string answer;
    int code;
    const char* names;
  };
  const std::vector<Case> cases = {
      {*EncodeResponse({5, "no such job", ""}), 5, "no such job"},
      {"", 14, "closed the connection"},
      {"HTTP/1.1 400 Bad", 14, "not a joulectl session frame"},
      {"JSF1" + U32(1) + "x", 13, "ends inside code"},
      {"JSF1" + U32(10) + "x", 14, "closed mid-frame"},
  };
  for (const Case& c : cases) {
    std::thread peer([&] {
      const int fd = accept(l, nullptr, nullptr);
      (void)ReadFrame(fd, kMaxFrameBody, absl::InfiniteFuture());
      (void)WriteAll(fd, c.answer);
      close(fd);
    });
    auto client = FrameClient::Connect(path);
    ASSERT_NE(client, nullptr);
    WireResponse r = client->Call({"/a.B/C", 1000000, {}, "req"},
                                  absl::Now() + absl::Seconds(10));
    peer.join();
    EXPECT_EQ(r.code, c.code) << c.names << ": " << r.message;
    EXPECT_TRUE(absl::StrContains(r.message, c.names)) << r.message;
    if (c.code != 5) {
      WireResponse again = client->Call({"/a.B/C", 0, {}, ""}, absl::Now());
      EXPECT_EQ(again.code, 14) << again.message;
    }
  }
  close(l);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace joule::cli
