// SPDX-License-Identifier: MIT
using NpcRuntime.Client;
using NpcRuntime.Protocol;
using UnityEngine;

namespace NpcRuntime.Unity
{
    /// <summary>
    /// Streams the character's reply audio through this GameObject's <see cref="AudioSource"/> as it arrives, and
    /// keeps the audio clock that visemes and actions follow. The samples are written in
    /// <c>OnAudioFilterRead</c> (audio thread) from a <see cref="ReplyPlayer"/> fed on the main thread.
    /// <para>The source plays a looping carrier clip of ones that the reply samples multiply, so the source's
    /// volume, spatial blend and 3-D settings apply to the voice as to any clip.</para>
    /// <see cref="NpcCharacter"/> drives it: <see cref="Feed"/> each server event, <see cref="Tick"/> once a frame.
    /// </summary>
    [RequireComponent(typeof(AudioSource))]
    [AddComponentMenu("NPC Runtime/NPC Audio Player")]
    public sealed class NpcAudioPlayer : MonoBehaviour
    {
        [Tooltip("Extra delay (ms) between the samples handed to Unity and the sound heard, on top of the DSP buffers " +
                 "(e.g. Bluetooth headsets).")]
        public float extraLatencyMs;

        private ReplyPlayer _player;
        private AudioSource _source;
        private float[] _scratch = new float[0];

        /// <summary>The engine-independent player (queue, clock, cues).</summary>
        public ReplyPlayer Player { get { return _player; } }

        /// <summary>True while reply audio is queued or playing.</summary>
        public bool IsPlaying { get { return _player != null && _player.IsPlaying; } }

        private void Awake()
        {
            int rate = AudioSettings.outputSampleRate;
            int bufferLength, buffers;
            AudioSettings.GetDSPBufferSize(out bufferLength, out buffers);
            _player = new ReplyPlayer(rate) { OutputLatencyMs = 1000.0 * bufferLength * buffers / rate + extraLatencyMs };
            _source = GetComponent<AudioSource>();
            var carrier = AudioClip.Create("npc-voice-carrier", rate, 1, rate, false);
            var ones = new float[rate];
            for (int i = 0; i < ones.Length; i++) ones[i] = 1f;
            carrier.SetData(ones, 0);
            _source.clip = carrier;
            _source.loop = true;
            _source.Play();
        }

        /// <summary>Take a server event (main thread).</summary>
        public void Feed(ServerEvent ev) { _player.Feed(ev); }

        /// <summary>Advance the clock and collect due cues and marks (main thread, once a frame).</summary>
        public PlaybackFrame Tick() { return _player.Update(); }

        /// <summary>Stop a reply now (null: all). Its last mark comes with the next <see cref="Tick"/>.</summary>
        public void Stop(string responseId = null) { _player.Stop(responseId); }

        private void OnAudioFilterRead(float[] data, int channels)
        {
            if (_player == null) return;
            if (_scratch.Length != data.Length) _scratch = new float[data.Length]; // once: the DSP buffer size is fixed
            _player.Read(_scratch, 0, data.Length, channels);
            for (int i = 0; i < data.Length; i++) data[i] *= _scratch[i];
        }
    }
}
