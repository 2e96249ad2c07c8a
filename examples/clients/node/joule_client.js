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
  jobs.SubmitJob({spec}, {deadline: deadline()}, (err, resp) => {
    if (err) fail(err);
    const id = resp.job.id;
    const changes = [];
    let done = false;
    const stream = admin.WatchEvents(
        {job_id: id, no_events: true},
        {deadline: new Date(Date.now() + a.timeout * 1000)});
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
        // Anything after this is streamed; the job may have ended before.
        jobs.GetJob({id}, {deadline: deadline()}, (err2, job) => {
          if (err2) fail(err2);
          if (TERMINAL.has(job.state)) finish();
        });
        return;
      }
      if (m.job) {
        changes.push(m.job.state);
        if (TERMINAL.has(m.job.state)) finish();
      }
    });
    stream.on('error', (err2) => {
      if (!done) fail(err2);
    });
    stream.on('end', () => {
      if (!done) fail('the stream ended before the job did');
    });
  });
}

main();
