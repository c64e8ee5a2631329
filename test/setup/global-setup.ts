import type { TestProject } from "vitest/node";
import { type NatsServerHandle, startNatsServer } from "../support/nats-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the NATS JetStream server the suite uses: `IDPO_NATS_URL` if given, else one spawned here. */
    natsUrl: string;
  }
}

let server: NatsServerHandle | undefined;

export async function setup(project: TestProject): Promise<void> {
  const given = process.env.IDPO_NATS_URL;
  if (given) {
    project.provide("natsUrl", given);
    return;
  }
  server = await startNatsServer();
  project.provide("natsUrl", server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
