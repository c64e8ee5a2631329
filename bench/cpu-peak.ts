import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/** This CPU's peak fp32 FLOP/s and how it was derived. */
export interface CpuPeak {
  /** cores × FMA pipes × fp32 lanes × 2 × GHz. */
  gflops: number;
  /** The same for 128-bit wasm SIMD (4 lanes), the widest tfjs-wasm uses. */
  wasmGflops: number;
  /** One line showing the product. */
  explanation: string;
}

/**
 * The physical fp32 limit: cores × 2 FMA pipes × vector lanes × 2 FLOP × clock. Lanes come from the
 * widest ISA in /proc/cpuinfo's flags (AVX-512 16, AVX2 8, else SSE 4), except that AMD family 25
 * (Zen 3/4) runs 512-bit operations as two 256-bit halves (8 lanes per pipe). The clock is the
 * nominal MHz /proc/cpuinfo reports (under a hypervisor, the host's TSC rate; turbo is not counted).
 */
export function cpuPeak(): CpuPeak {
  let info = "";
  try {
    info = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // Not Linux: fall back to what os.cpus() reports, SSE width.
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(info)?.[1] ?? "";
  const flags = new Set(field("flags").split(/\s+/));
  const amdZen34 = field("vendor_id") === "AuthenticAMD" && Number(field("cpu family")) === 25;
  const lanes = flags.has("avx512f") && !amdZen34 ? 16 : flags.has("avx2") || flags.has("avx512f") ? 8 : 4;
  const mhz = Number(field("cpu MHz")) || cpus()[0]?.speed || 0;
  const cores = cpus().length;
  const ghz = mhz / 1000;
  const gflops = cores * 2 * lanes * 2 * ghz;
  const wasmGflops = cores * 2 * 4 * 2 * ghz;
  const isa = flags.has("avx512f") ? "AVX-512" : flags.has("avx2") ? "AVX2" : "SSE";
  return {
    gflops,
    wasmGflops,
    explanation:
      `${cores} cores × 2 FMA pipes × ${lanes} fp32 lanes (${isa}${amdZen34 && flags.has("avx512f") ? " as 2×256-bit" : ""}) × 2 FLOP × ` +
      `${ghz.toFixed(2)} GHz = ${gflops.toFixed(0)} GFLOP/s (wasm SIMD128, 4 lanes: ${wasmGflops.toFixed(0)} GFLOP/s)`,
  };
}
