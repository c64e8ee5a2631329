import type { TestProject } from "vitest/node";
import { startTestNats, type TestNats } from "../support/nats.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the NATS JetStream server the suite uses: `IDPO_NATS_URL` if given, else one spawned here. */
    natsUrl: string;
  }
}

let server: TestNats | undefined;

export async function setup(project: TestProject): Promise<void> {
  const given = process.env.IDPO_NATS_URL;
  if (given) {
    project.provide("natsUrl", given);
    return;
  }
  server = await startTestNats();
  // Which path the suite took (a container where a runtime answers, else a spawned nats-server).
  process.stderr.write(
    `test NATS: ${server.kind === "container" ? "testcontainers" : "spawned nats-server -js"}\n`,
  );
  project.provide("natsUrl", server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
