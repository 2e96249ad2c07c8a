#!/usr/bin/env python3
"""A Joule client in Python, written from proto/joule/v1/*.proto alone.

It submits a job, follows it to its end on the WatchEvents server stream (no
polling), then reads the tenant's statement for the current month, and
prints one JSON line:

  {"job": "job-000001", "state": "JOB_STATE_SUCCEEDED", "exit_code": 0,
   "changes": ["JOB_STATE_STARTING", ...], "statement_total_cents": 12}

Needs Debian's python3-grpcio and python3-grpc-tools (the stubs are
generated from the .proto files into a temp dir at start). Run from the
repository root:

  python3 examples/clients/python/joule_client.py --server 127.0.0.1:7070 \
      --ca pki/ca.crt --token-file acme.token --tenant acme -- sh -c 'echo hi'

Exit status: 0 the job succeeded, 1 it did not or a call failed, 2 bad
arguments.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile


def copy_without_optional(proto_root):
    """A temp copy of proto_root/joule/v1/*.proto without `optional ` labels."""
    import re
    copy = tempfile.mkdtemp(prefix="joule-proto-")
    src = os.path.join(proto_root, "joule", "v1")
    dst = os.path.join(copy, "joule", "v1")
    os.makedirs(dst)
    for name in os.listdir(src):
        if name.endswith(".proto"):
            with open(os.path.join(src, name)) as f:
                text = re.sub(r"^(\s*)optional\s+", r"\1", f.read(), flags=re.M)
            with open(os.path.join(dst, name), "w") as f:
                f.write(text)
    return copy


def generate_stubs(proto_root):
    """Compiles joule.proto into Python modules; returns (pb2, pb2_grpc)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="joule-py-")
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    # Debian's grpc_tools bundles an older protoc that refuses proto3
    # `optional` labels; without them a field has the same number and wire
    # encoding (only "is it set" is lost, which this client never asks), so
    # the stubs are generated from a copy with the labels taken out.
    proto_root = copy_without_optional(proto_root)
    args = ["protoc", "-I" + proto_root, "--python_out=" + out,
            "--grpc_python_out=" + out]
    if os.path.isdir(well_known):
        args.append("-I" + well_known)
    args.append(os.path.join(proto_root, "joule", "v1", "joule.proto"))
    if protoc.main(args) != 0:
        sys.exit("joule_client: protoc failed")
    sys.path.insert(0, out)
    from joule.v1 import joule_pb2, joule_pb2_grpc  # noqa: E402
    return joule_pb2, joule_pb2_grpc


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="127.0.0.1:7070")
    p.add_argument("--ca", required=True, help="CA of jouled's certificate")
    p.add_argument("--token-file", required=True, help="bearer token file")
    p.add_argument("--tenant", required=True)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--proto", default=os.path.join(here, "..", "..", "..",
                                                   "proto"))
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds to wait for the job")
    p.add_argument("command", nargs="+", help="the job's command, after --")
    a = p.parse_args()

    import grpc
    pb, rpc = generate_stubs(os.path.abspath(a.proto))
    with open(a.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with open(a.token_file) as f:
        token = f.read().strip()
    md = [("authorization", "Bearer " + token)]
    channel = grpc.secure_channel(a.server, creds)
    jobs = rpc.JobServiceStub(channel)
    admin = rpc.AdminServiceStub(channel)
    billing = rpc.BillingServiceStub(channel)

    spec = pb.JobSpec(tenant=a.tenant, command=a.command,
                      gpus_per_node=a.gpus, nodes=1)
    terminal = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED,
                pb.JOB_STATE_CANCELLED}
    changes = []
    # Subscribe to the tenant's job changes first, submit once subscribed:
    # no change of the job can be missed.
    stream = admin.WatchEvents(pb.WatchEventsRequest(jobs=True,
                                                     no_events=True),
                               metadata=md, timeout=a.timeout)
    state = None
    job = None
    for m in stream:
        if m.subscribed:
            job = jobs.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=md,
                                 timeout=30).job
            continue
        if m.HasField("job") and m.job.job_id == job.id:
            changes.append(pb.JobState.Name(m.job.state))
            if m.job.state in terminal:
                state = jobs.GetJob(pb.GetJobRequest(id=job.id), metadata=md,
                                    timeout=30)
                break
    stream.cancel()
    if state is None:
        sys.exit("joule_client: the stream ended before the job did")
    period = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    st = billing.GetStatement(pb.GetStatementRequest(tenant=a.tenant,
                                                     period=period),
                              metadata=md, timeout=30)
    print(json.dumps({"job": job.id, "state": pb.JobState.Name(state.state),
                      "exit_code": state.exit_code, "changes": changes,
                      "statement_total_cents": st.total_cents,
                      "statement_period": st.period}))
    return 0 if state.state == pb.JOB_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
