// SPDX-License-Identifier: MIT
using System;
using System.IO;
using System.Text;
using NpcRuntime.Client;

namespace NpcRuntime.ConsoleTest
{
    /// <summary>Reads a PCM16 WAV file (any rate, mono or interleaved channels) as mono floats.</summary>
    public static class Wav
    {
        public static float[] Read(string path, out int sampleRate)
        {
            byte[] b = File.ReadAllBytes(path);
            if (b.Length < 12 || Encoding.ASCII.GetString(b, 0, 4) != "RIFF" || Encoding.ASCII.GetString(b, 8, 4) != "WAVE")
                throw new InvalidDataException(path + ": not a RIFF/WAVE file");
            int channels = 0, bits = 0;
            sampleRate = 0;
            int pos = 12;
            while (pos + 8 <= b.Length)
            {
                string id = Encoding.ASCII.GetString(b, pos, 4);
                int size = BitConverter.ToInt32(b, pos + 4);
                int body = pos + 8;
                if (id == "fmt ")
                {
                    int format = BitConverter.ToInt16(b, body);
                    channels = BitConverter.ToInt16(b, body + 2);
                    sampleRate = BitConverter.ToInt32(b, body + 4);
                    bits = BitConverter.ToInt16(b, body + 14);
                    if (format != 1 || bits != 16) throw new InvalidDataException(path + ": only 16-bit PCM WAV is supported");
                }
                else if (id == "data")
                {
                    if (channels == 0) throw new InvalidDataException(path + ": data before fmt");
                    int count = Math.Min(size, b.Length - body) & ~1;
                    return Pcm16.ToMono(Pcm16.ToFloats(b, body, count), channels);
                }
                pos = body + size + (size & 1);
            }
            throw new InvalidDataException(path + ": no data chunk");
        }
    }
}
