import * as tf from "@tensorflow/tfjs-core";

// The stock MatMul gradient multiplies with transpose flags set; on wasm that leaves XNNPACK for a
// naive loop. These wrappers transpose explicitly so that the forward and both gradient matmuls
// are plain 2-D products (batch 1, no transpose flags), the fast path on every backend.

const linearWithBias = tf.customGrad((...args: unknown[]) => {
  const [x, w, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
  save([x, w]);
  const value = tf.fused.matMul({ a: x, b: w, bias: b });
  return {
    value,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const dy2 = dy as tf.Tensor2D;
      return [tf.matMul(dy2, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dy2), tf.sum(dy2, 0)];
    },
  };
});

const linearNoBias = tf.customGrad((...args: unknown[]) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([x, w]);
  const value = tf.matMul(x, w);
  return {
    value,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const dy2 = dy as tf.Tensor2D;
      return [tf.matMul(dy2, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dy2)];
    },
  };
});

/** y = x·W (+ b) for x `[n, in]`, W `[in, out]`, b `[out]`. */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor2D {
  if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0]) {
    throw new Error(`linear: cannot multiply [${x.shape}] by [${w.shape}]`);
  }
  if (b) return linearWithBias(x, w, b) as tf.Tensor2D;
  return linearNoBias(x, w) as tf.Tensor2D;
}

/** Linear layer on the channel axis of any-rank input `[..., in]`. */
export function linearLastAxis(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const shape = x.shape as number[];
  const cin = shape[shape.length - 1];
  const y = linear(tf.reshape(x, [x.size / cin, cin]), w, b);
  return tf.reshape(y, [...shape.slice(0, -1), w.shape[1] as number]);
}
