#!/usr/bin/env node
// A Joule client in Node.js, written from proto/joule/v1/joule.proto alone
// (loaded at run time by @grpc/proto-loader; no generated code).
//
// Submits a job, follows it to its end on the WatchEvents server stream (no
// polling), reads the tenant's statement for the current month and prints
// one JSON line: {"job": ..., "state": "JOB_STATE_SUCCEEDED", "exit_code": 0,
// "changes": [...], "statement_total_cents": "12"}.
//
// Dependencies: `bash scripts/install-deps.sh` runs `npm install` here
// (node_modules/ is git-ignored). From the repository root:
//
//   node examples/clients/node/joule_client.js --server 127.0.0.1:7070 \
//       --ca pki/ca.crt --token-file acme.token --tenant acme -- sh -c 'echo hi'
//
// Exit status: 0 the job succeeded, 1 it did not or a call failed, 2 bad
// arguments.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const a = {server: '127.0.0.1:7070', gpus: 1, timeout: 120,
             proto: path.join(__dirname, '..', '..', '..', 'proto'),
             command: []};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--') { a.command = argv.slice(i + 1); break; }
    const v = argv[++i];
    if (v === undefined) usage(`${k}: needs a value`);
    if (k === '--server') a.server = v;
    else if (k === '--ca') a.ca = v;
    else if (k === '--token-file') a.tokenFile = v;
    else if (k === '--tenant') a.tenant = v;
    else if (k === '--gpus') a.gpus = Number(v);
    else if (k === '--timeout') a.timeout = Number(v);
    else if (k === '--proto') a.proto = v;
    else usage(`unknown flag ${k}`);
  }
  if (!a.ca || !a.tokenFile || !a.tenant || a.command.length === 0) {
    usage('--ca, --token-file, --tenant and a command after -- are required');
  }
  return a;
}

function usage(why) {
  process.stderr.write(`joule_client: ${why}\n`);
  process.exit(2);
}

function fail(err) {
  process.stderr.write(`joule_client: ${err.message || err}\n`);
  process.exit(1);
}

const TERMINAL = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED',
                          'JOB_STATE_CANCELLED']);

function main() {
  const a = parseArgs(process.argv.slice(2));
  const def = protoLoader.loadSync(
      path.join(a.proto, 'joule', 'v1', 'joule.proto'),
      {includeDirs: [a.proto], keepCase: true, longs: String, enums: String,
       defaults: true, oneofs: true});
  const v1 = grpc.loadPackageDefinition(def).joule.v1;
  const creds = grpc.credentials.combineChannelCredentials(
      grpc.credentials.createSsl(fs.readFileSync(a.ca)),
      grpc.credentials.createFromMetadataGenerator((_, cb) => {
        const md = new grpc.Metadata();
        md.add('authorization',
               'Bearer ' + fs.readFileSync(a.tokenFile, 'utf8').trim());
        cb(null, md);
      }));
  const jobs = new v1.JobService(a.server, creds);
  const admin = new v1.AdminService(a.server, creds);
  const billing = new v1.BillingService(a.server, creds);
  const deadline = () => new Date(Date.now() + 30000);

  const spec = {tenant: a.tenant, command: a.command, gpus_per_node: a.gpus,
                nodes: 1};
  // Subscribe to the tenant's job changes first, submit once subscribed:
  // no change of the job can be missed.
  // Changes per job id, kept until the submission's answer names ours.
  const seen = new Map();
  let changes = [];
  let done = false;
  let id = null;
  const stream = admin.WatchEvents(
      {jobs: true, no_events: true},
      {deadline: new Date(Date.now() + a.timeout * 1000)});
  {
    const check = () => {
      if (id === null) return;
      changes = seen.get(id) || [];
      if (changes.some((s) => TERMINAL.has(s))) finish();
    };
    const finish = () => {
      if (done) return;
      done = true;
      stream.cancel();
      jobs.GetJob({id}, {deadline: deadline()}, (err2, job) => {
        if (err2) fail(err2);
        const period = new Date().toISOString().slice(0, 7);
        billing.GetStatement({tenant: a.tenant, period}, {deadline: deadline()},
                             (err3, st) => {
          if (err3) fail(err3);
          process.stdout.write(JSON.stringify({
            job: id, state: job.state, exit_code: job.exit_code, changes,
            statement_total_cents: st.total_cents,
            statement_period: st.period}) + '\n');
          process.exit(job.state === 'JOB_STATE_SUCCEEDED' ? 0 : 1);
        });
      });
    };
    stream.on('data', (m) => {
      if (m.subscribed) {
        jobs.SubmitJob({spec}, {deadline: deadline()}, (err2, resp) => {
          if (err2) fail(err2);
          id = resp.job.id;
          check();
        });
        return;
      }
      if (m.job) {
        if (!seen.has(m.job.job_id)) seen.set(m.job.job_id, []);
        seen.get(m.job.job_id).push(m.job.state);
        check();
      }
    });
    stream.on('error', (err2) => {
      if (!done) fail(err2);
    });
    stream.on('end', () => {
      if (!done) fail('the stream ended before the job did');
    });
  }
}

main();
