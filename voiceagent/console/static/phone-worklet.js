// The microphone, as G.711 μ-law at 8 kHz in 20 ms frames (160 bytes): what a Twilio stream carries.
// Runs on the audio thread; resamples from the context's rate by linear interpolation.

const FRAME = 160;

function mulaw(sample) {
  const BIAS = 0x84, CLIP = 32635;
  let pcm = Math.max(-1, Math.min(1, sample)) * 32767;
  const sign = pcm < 0 ? 0x80 : 0;
  pcm = Math.min(CLIP, Math.abs(pcm)) + BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (pcm & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (pcm >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

class MulawEncoder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 8000;  // input samples per output sample
    this.position = 0;  // where the next output sample falls, in input samples from this block's start
    this.previous = 0;
    this.frame = new Uint8Array(FRAME);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    while (this.position < input.length) {
      const at = Math.floor(this.position), frac = this.position - at;
      const before = at === 0 ? this.previous : input[at - 1];
      const sample = before + (input[at] - before) * frac;
      this.frame[this.filled++] = mulaw(sample);
      if (this.filled === FRAME) {
        this.port.postMessage(this.frame.slice());
        this.filled = 0;
      }
      this.position += this.step;
    }
    this.position -= input.length;
    this.previous = input[input.length - 1];
    return true;
  }
}

registerProcessor("mulaw-encoder", MulawEncoder);
