import { readFileSync, writeFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { ImageFormat, ImproverService } from "@idpo/proto";
import { createPeerTransport, peerAddress } from "@idpo/runtime";
import { Command } from "commander";
import { intArg, numberArg } from "../args.js";
import { UsageError } from "../errors.js";

/** Options of `idpo improve`. */
interface ImproveOptions {
  in: string;
  prompt: string;
  out: string;
  addr?: string;
  textGuidance: number;
  imageGuidance: number;
  steps: number;
  seed: number;
  strength: number;
}

/** `idpo improve`: sends a PNG to the Improver's ImproveImages and writes the improved PNG. */
export function improveCommand(): Command {
  return new Command("improve")
    .description("improve an image for its prompt with the improvement model (the Improver's ImproveImages)")
    .requiredOption("--in <file>", "input PNG, at the model's resolution")
    .requiredOption("--prompt <text>", "what the image should show")
    .requiredOption("--out <file>", "where to write the improved PNG")
    .option("--addr <url>", "Improver address (default IDPO_IMPROVER_ADDR or http://127.0.0.1:50052)")
    .option(
      "--text-guidance <s>",
      "text guidance s_T",
      numberArg("--text-guidance", { min: 0, max: 30 }),
      3.5,
    )
    .option(
      "--image-guidance <s>",
      "image guidance s_I",
      numberArg("--image-guidance", { min: 0, max: 30 }),
      3.0,
    )
    .option("--steps <n>", "denoising steps", intArg("--steps", 1, 1000), 20)
    .option("--seed <n>", "sampling seed", intArg("--seed", 0, Number.MAX_SAFE_INTEGER), 0)
    .option(
      "--strength <s>",
      "fraction of the trajectory to run: 1 starts from noise, below 1 from the noised input (SDEdit)",
      numberArg("--strength", { min: 0, max: 1, minOpen: true }),
      1,
    )
    .action(async (opts: ImproveOptions) => {
      if (opts.prompt.trim() === "") throw new UsageError("--prompt: must not be empty");
      let png: Uint8Array;
      try {
        png = readFileSync(opts.in);
      } catch (err) {
        throw new UsageError(`--in: cannot read ${opts.in}: ${(err as Error).message}`);
      }
      const token = process.env.IDPO_AUTH_TOKEN?.trim() || undefined;
      let transport: ReturnType<typeof createPeerTransport>;
      try {
        transport = createPeerTransport(opts.addr ?? peerAddress("improver"), { token });
      } catch (err) {
        throw new UsageError(`--addr: ${(err as Error).message}`);
      }
      const client = createClient(ImproverService, transport);
      const res = await client.improveImages({
        images: [{ data: { case: "png", value: png } }],
        prompts: [opts.prompt],
        textGuidanceScale: opts.textGuidance,
        imageGuidanceScale: opts.imageGuidance,
        steps: opts.steps,
        seed: BigInt(opts.seed),
        strength: opts.strength,
        outputFormat: ImageFormat.PNG,
      });
      const out = res.images[0]?.data;
      if (out?.case !== "png") throw new Error("the improver returned no PNG image");
      writeFileSync(opts.out, out.value);
      process.stdout.write(`${opts.out} (improver checkpoint ${res.checkpoint?.id ?? "unknown"})\n`);
    });
}
