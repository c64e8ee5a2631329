import * as tf from "@tensorflow/tfjs-core";

/**
 * Maps images in model space ([-1, 1], NHWC RGB) to the space the UNet diffuses in and back.
 * At this scale the model works in pixel space (the identity codec); a VAE would implement this
 * interface and set the UNet's in/out channels and image size to its latent shape.
 */
export interface LatentCodec {
  /** Name stored in the model config. */
  readonly name: string;
  /** Channels of the latent. */
  readonly channels: number;
  /** Spatial downscale factor image side / latent side. */
  readonly downscale: number;
  /** Images `[n, S, S, 3]` → latents; the caller owns the result. */
  encode(x: tf.Tensor4D): tf.Tensor4D;
  /** Latents → images `[n, S, S, 3]`; the caller owns the result. */
  decode(z: tf.Tensor4D): tf.Tensor4D;
}

/** Pixel space: latents are the images. */
export const identityCodec: LatentCodec = {
  name: "identity",
  channels: 3,
  downscale: 1,
  encode: (x) => tf.clone(x),
  decode: (z) => tf.clone(z),
};

/** Looks a codec up by the name stored in a config. */
export function codecByName(name: string): LatentCodec {
  if (name === identityCodec.name) return identityCodec;
  throw new Error(`unknown latent codec ${JSON.stringify(name)} (known: identity)`);
}
