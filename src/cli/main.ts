#!/usr/bin/env bun
/**
 * The serve-bin binary: one entry for every command and for the replica role
 * (the server starts replicas as this same program with `replica <spec>`).
 */
import { ServeError } from "../error.ts";
import { UsageError } from "./args.ts";
import { registerServeBinModule } from "./plugin.ts";

const HELP = `serve-bin — inference graphs for TypeScript, served by one binary

usage:
  serve-bin run <graph.ts[:export] | config.yaml> [--host] [--port 8000] [--admin-port 8265]
  serve-bin build <graph.ts[:export]>... [-o app.yaml]
  serve-bin build <graph.ts[:export]>... --target swarm --image IMAGE -o DIR
  serve-bin build <graph.ts[:export]>... --target kubernetes --image IMAGE -o DIR [--namespace NS] [--autoscaler serve-bin|hpa]
  serve-bin deploy <config.yaml> [--address URL]
  serve-bin status [--address URL] [--json]
  serve-bin config [--address URL]
  serve-bin shutdown [--address URL]
  serve-bin start
  serve-bin graph <graph.ts[:export]> [--format mermaid|dot]
  serve-bin schema
  serve-bin healthcheck [--port 8000]
  serve-bin controller --config F [--listen tcp://0.0.0.0:7070] [--engine static|swarm]   (cluster roles, one per container)
  serve-bin proxy --controller tcp://HOST:7070 [--port 8000]
  serve-bin replica --app A --deployment N --controller tcp://HOST:7070 [--listen tcp://0.0.0.0:7000]

Common flags: --admin-token-file F (or SERVE_BIN_ADMIN_TOKEN; --admin-token T shows in ps), --state-dir, --app-dir.
TCP links between processes need SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.`;

async function main(argv: string[]): Promise<number> {
  registerServeBinModule();
  const [command, ...rest] = argv;
  switch (command) {
    case "replica": {
      if (rest[0]?.startsWith("--")) {
        const { replicaRole } = await import("./roles/replica.ts");
        return replicaRole(rest);
      }
      const { runReplica, receiveSpec } = await import("../runtime/replica/main.ts");
      const { readEnv } = await import("../config/env.ts");
      await runReplica(await receiveSpec(), { token: readEnv().clusterToken });
      return -1; // keeps running
    }
    case "plan": {
      // The server's planning process: imports one graph module off the serving event loop.
      if (!process.send) throw new UsageError("plan is the server's planning process and takes its request over IPC; to see a graph, run serve-bin graph <graph.ts[:export]>");
      const { runPlanner } = await import("../runtime/planner/main.ts");
      await runPlanner();
      return -1; // killed by the server once it answered
    }
    case "controller": {
      const { controllerRole } = await import("./roles/controller.ts");
      return controllerRole(rest);
    }
    case "proxy": {
      const { proxyRole } = await import("./roles/proxy.ts");
      return proxyRole(rest);
    }
    case "run":
    case "start": {
      const { runCommand } = await import("./run.ts");
      return runCommand(rest, command);
    }
    case "build": {
      const { buildCommand } = await import("./build.ts");
      return buildCommand(rest);
    }
    case "deploy":
    case "status":
    case "config":
    case "shutdown": {
      const remote = await import("./remote.ts");
      const fn = { deploy: remote.deployCommand, status: remote.statusCommand, config: remote.configCommand, shutdown: remote.shutdownCommand }[command];
      return fn(rest);
    }
    case "graph": {
      const { graphCommand } = await import("./graph-cmd.ts");
      return graphCommand(rest);
    }
    case "schema": {
      const { schemaCommand } = await import("./schema-cmd.ts");
      return schemaCommand(rest);
    }
    case "healthcheck": {
      const { healthcheckCommand } = await import("./healthcheck.ts");
      return healthcheckCommand(rest);
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return command === undefined ? 2 : 0;
    case "--version":
    case "version":
      console.log("serve-bin 0.1.0");
      return 0;
    default:
      throw new UsageError(`unknown command "${command}"\n\n${HELP}`);
  }
}

try {
  const code = await main(process.argv.slice(2));
  if (code >= 0) process.exit(code);
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`serve-bin: ${e.message}\n`);
    process.exit(2);
  }
  const err = e as Error;
  process.stderr.write(`serve-bin: ${err.message}\n`);
  if (!(err instanceof ServeError) && err?.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(err instanceof ServeError && (err.code === "invalid" || err.code === "build") ? 2 : 1);
}
