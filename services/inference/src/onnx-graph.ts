import { createHash } from "node:crypto";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

/** ONNX operator set the graphs are written against (17: LayerNormalization). */
export const ONNX_OPSET = 17;

/** ONNX IR version matching ONNX_OPSET. */
const IR_VERSION = 8;

/** One node attribute: an int, a float, a list of ints or a string. */
export type OnnxAttribute = { i: number } | { f: number } | { ints: readonly number[] } | { s: string };

/** A dimension of a graph input or output: fixed, or a symbolic name such as "n". */
export type OnnxDim = number | string;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

function attribute(name: string, a: OnnxAttribute): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if ("i" in a) return onnx.AttributeProto.create({ name, type: T.INT, i: a.i });
  if ("f" in a) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: a.f });
  if ("ints" in a) return onnx.AttributeProto.create({ name, type: T.INTS, ints: [...a.ints] });
  return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(a.s) });
}

function valueInfo(name: string, elemType: number, dims: readonly OnnxDim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  // A copy, so the initializer does not alias (and keep alive) a larger buffer such as a whole checkpoint.
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

/**
 * Builds one ONNX graph node by node (static single assignment: every value gets a fresh name).
 * Weights become initializers, serialized with the graph.
 */
export class OnnxGraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(private readonly name: string) {}

  /** A value name not used yet, derived from `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.names.has(name)) name = `${hint}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** Declares a float32 graph input. */
  input(name: string, dims: readonly OnnxDim[], elemType: "float32" | "int64" = "float32"): string {
    const n = this.fresh(name);
    if (n !== name) throw new Error(`onnx graph: input name ${name} is taken`);
    this.inputs.push(valueInfo(n, elemType === "float32" ? FLOAT : INT64, dims));
    return n;
  }

  /** Declares `value` as the float32 graph output `name` (through an Identity when the names differ). */
  output(value: string, name: string, dims: readonly OnnxDim[]): void {
    const out = this.fresh(name);
    if (out !== name) throw new Error(`onnx graph: output name ${name} is taken`);
    this.nodes.push(onnx.NodeProto.create({ opType: "Identity", input: [value], output: [out], name: out }));
    this.outputs.push(valueInfo(out, FLOAT, dims));
  }

  /** A float32 initializer (weight or constant). */
  floats(name: string, dims: readonly number[], data: Float32Array): string {
    let size = 1;
    for (const d of dims) size *= d;
    if (size !== data.length)
      throw new Error(`onnx graph: initializer ${name} has ${data.length} values for shape [${dims}]`);
    const n = this.fresh(name);
    this.initializers.push(
      onnx.TensorProto.create({ name: n, dims: [...dims], dataType: FLOAT, rawData: bytesOf(data) }),
    );
    return n;
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.floats("const", [], new Float32Array([value]));
  }

  /** A 1-D int64 constant (shapes, axes, permutations). */
  int64s(values: readonly number[]): string {
    const n = this.fresh("shape");
    this.initializers.push(
      onnx.TensorProto.create({
        name: n,
        dims: [values.length],
        dataType: INT64,
        rawData: bytesOf(BigInt64Array.from(values.map((v) => BigInt(v)))),
      }),
    );
    return n;
  }

  /** Appends a node with one output; returns the output's name. Empty input names mean "omitted". */
  op(opType: string, inputs: readonly string[], attrs: Record<string, OnnxAttribute> = {}): string {
    return this.opN(opType, inputs, 1, attrs)[0];
  }

  /** Appends a node with `outputs` outputs. */
  opN(
    opType: string,
    inputs: readonly string[],
    outputs: number,
    attrs: Record<string, OnnxAttribute> = {},
  ): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        name: outs[0],
        input: [...inputs],
        output: outs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return outs;
  }

  /** Serializes the model (opset ONNX_OPSET). */
  encode(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: "idpo",
      opsetImport: [{ domain: "", version: ONNX_OPSET }],
      graph: onnx.GraphProto.create({
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** A serialized graph and its content hash. */
export interface EncodedGraph {
  /** The ONNX ModelProto bytes. */
  bytes: Uint8Array;
  /** Lowercase hex SHA-256 of `bytes`. */
  sha256: string;
}

/** Serializes a builder's graph with its hash. */
export function encodeGraph(b: OnnxGraphBuilder): EncodedGraph {
  const bytes = b.encode();
  return { bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}
