// SPDX-License-Identifier: MIT
using System;

namespace NpcRuntime.Client
{
    /// <summary>PCM16 little-endian mono conversions: what the server sends and expects on binary frames.</summary>
    public static class Pcm16
    {
        /// <summary>The microphone rate the server works at (any 8–48 kHz is accepted; 16 kHz avoids its resampling).</summary>
        public const int ServerInputRate = 16000;

        /// <summary>Float samples (-1..1, clamped) to PCM16 bytes.</summary>
        public static byte[] FromFloats(float[] samples, int offset, int count)
        {
            var bytes = new byte[count * 2];
            for (int i = 0; i < count; i++)
            {
                float f = samples[offset + i];
                if (f > 1f) f = 1f;
                else if (f < -1f) f = -1f;
                else if (float.IsNaN(f)) f = 0f;
                int v = (int)Math.Round(f * 32767f);
                bytes[2 * i] = (byte)(v & 0xff);
                bytes[2 * i + 1] = (byte)((v >> 8) & 0xff);
            }
            return bytes;
        }

        public static byte[] FromFloats(float[] samples) { return FromFloats(samples, 0, samples.Length); }

        /// <summary>PCM16 bytes to float samples in -1..1. <paramref name="count"/> must be even.</summary>
        public static float[] ToFloats(byte[] pcm, int offset, int count)
        {
            if (count % 2 != 0) throw new ArgumentException("PCM16 data has an even number of bytes");
            var samples = new float[count / 2];
            for (int i = 0; i < samples.Length; i++)
            {
                short s = (short)(pcm[offset + 2 * i] | (pcm[offset + 2 * i + 1] << 8));
                samples[i] = s / 32768f;
            }
            return samples;
        }

        public static float[] ToFloats(byte[] pcm) { return ToFloats(pcm, 0, pcm.Length); }

        /// <summary>Mix interleaved multi-channel samples down to mono.</summary>
        public static float[] ToMono(float[] interleaved, int channels)
        {
            if (channels <= 1) return interleaved;
            var mono = new float[interleaved.Length / channels];
            for (int i = 0; i < mono.Length; i++)
            {
                float sum = 0;
                for (int c = 0; c < channels; c++) sum += interleaved[i * channels + c];
                mono[i] = sum / channels;
            }
            return mono;
        }

        /// <summary>Resample a whole clip at once (see <see cref="Resampler"/> for streams).</summary>
        public static float[] Resample(float[] samples, int fromRate, int toRate)
        {
            var r = new Resampler(fromRate, toRate);
            return r.Process(samples, 0, samples.Length);
        }

        /// <summary>One-shot: float samples at any rate to PCM16 mono 16 kHz bytes, ready for the server.</summary>
        public static byte[] MicToServer(float[] samples, int sampleRate)
        {
            return FromFloats(Resample(samples, sampleRate, ServerInputRate));
        }
    }

    /// <summary>
    /// A streaming resampler for speech: linear interpolation, preceded when downsampling (e.g. a 48 kHz microphone
    /// to 16 kHz) by a windowed-sinc low-pass (Blackman) at 0.4 × the output rate, so little aliases into the speech
    /// band. Feed consecutive blocks of one stream to <see cref="Process"/>: the output joins up without clicks.
    /// Not thread-safe.
    /// </summary>
    public sealed class Resampler
    {
        private readonly int _from;
        private readonly int _to;
        private readonly double _step;   // input samples per output sample
        private readonly float[] _taps;  // low-pass kernel (a single 1: none)
        private readonly float[] _history;
        private int _historyPos;
        private double _pos;             // position of the next output sample, in input samples relative to _prev
        private float _prev;             // last filtered input sample of the previous block
        private bool _started;

        public Resampler(int fromRate, int toRate)
        {
            if (fromRate <= 0 || toRate <= 0) throw new ArgumentException("sample rates must be positive");
            _from = fromRate;
            _to = toRate;
            _step = (double)fromRate / toRate;
            _taps = fromRate > toRate ? LowPass(0.4 * toRate / fromRate, 16 * (int)Math.Ceiling(_step) + 1) : new[] { 1f };
            _history = new float[_taps.Length];
        }

        public int FromRate { get { return _from; } }
        public int ToRate { get { return _to; } }

        /// <summary>A Blackman-windowed sinc low-pass: <paramref name="cutoff"/> in cycles per input sample.</summary>
        private static float[] LowPass(double cutoff, int length)
        {
            var h = new float[length];
            double sum = 0, mid = (length - 1) / 2.0;
            for (int n = 0; n < length; n++)
            {
                double x = n - mid;
                double sinc = x == 0 ? 2 * cutoff : Math.Sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
                double window = 0.42 - 0.5 * Math.Cos(2 * Math.PI * n / (length - 1)) + 0.08 * Math.Cos(4 * Math.PI * n / (length - 1));
                h[n] = (float)(sinc * window);
                sum += h[n];
            }
            for (int n = 0; n < length; n++) h[n] = (float)(h[n] / sum); // unity gain at DC
            return h;
        }

        private float Filter(float sample)
        {
            if (_taps.Length == 1) return sample;
            _history[_historyPos] = sample;
            double acc = 0;
            int k = _historyPos;
            for (int n = 0; n < _taps.Length; n++)
            {
                acc += _taps[n] * _history[k];
                k = k == 0 ? _history.Length - 1 : k - 1;
            }
            _historyPos = (_historyPos + 1) % _history.Length;
            return (float)acc;
        }

        /// <summary>Resample the next block of the stream.</summary>
        public float[] Process(float[] input, int offset, int count)
        {
            if (_from == _to)
            {
                var copy = new float[count];
                Array.Copy(input, offset, copy, 0, count);
                return copy;
            }
            // filtered input: prev (index 0) followed by this block's samples (indices 1..count)
            var x = new float[count + 1];
            for (int i = 0; i < count; i++) x[i + 1] = Filter(input[offset + i]);
            if (!_started)
            {
                if (count == 0) return new float[0];
                _started = true;
                x[0] = x[1];
                _pos = 1; // the first output sample is the first input sample
            }
            else x[0] = _prev;
            int outCount = 0;
            var output = new float[(int)(count / _step) + 2];
            while (_pos < count)
            {
                int i = (int)_pos;
                double frac = _pos - i;
                output[outCount++] = (float)(x[i] + (x[i + 1] - x[i]) * frac);
                _pos += _step;
            }
            _pos -= count;
            _prev = x[count];
            if (outCount == output.Length) return output;
            var trimmed = new float[outCount];
            Array.Copy(output, trimmed, outCount);
            return trimmed;
        }
    }
}
