import * as tf from "@tensorflow/tfjs-core";

/** Classifier-free guidance: ε_u + g·(ε_c − ε_u) (g = 1 returns ε_c). */
export function classifierFreeGuidance(
  epsCond: tf.Tensor4D,
  epsUncond: tf.Tensor4D,
  scale: number,
): tf.Tensor4D {
  return tf.tidy(() => tf.add(epsUncond, tf.mul(tf.sub(epsCond, epsUncond), scale)));
}

/**
 * The paper's double guidance (Eq. 9) for the improvement model:
 * ε̄ = ε(∅,∅) + s_I·(ε(x,∅) − ε(∅,∅)) + s_T·(ε(x,c) − ε(x,∅)),
 * where ε(x,c) is conditioned on the image and the text, ε(x,∅) on the image only, ε(∅,∅) on neither.
 */
export function doubleGuidance(
  epsImageText: tf.Tensor4D,
  epsImage: tf.Tensor4D,
  epsNone: tf.Tensor4D,
  sT: number,
  sI: number,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.add(
      tf.add(epsNone, tf.mul(tf.sub(epsImage, epsNone), sI)),
      tf.mul(tf.sub(epsImageText, epsImage), sT),
    ),
  );
}
